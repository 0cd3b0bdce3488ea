"""What pre-training (and the methods that replay it: ``ewc``, ``replay``) reads of a world: the
(prefix, target) pairs of its statements, filler lines and QA.

Why a module of its own: the corpus is data, not the training recipe; a method that replays the
pre-training corpus must not import the pre-training stage to get it.
"""
from __future__ import annotations

from interference.world import World


def statement_pairs(world: World) -> list[tuple[str, str]]:
    """(prefix, value) of every statement paraphrase of every pre-trained entity."""
    pairs = []
    for e in world.split("pretrain_qa") + world.split("statement_only"):
        for r in world.config.relations:
            pairs.extend(world.render_statements(e, r))
    return pairs


def pretraining_pairs(world: World) -> list[tuple[str, str]]:
    """(prefix, value) pairs of the pre-training corpus: statements and filler lines (QA pairs are
    added, qa_weight times, by ``pretrain``)."""
    if hasattr(world, "pretraining_pairs"):  # real data: interference.real_data.RealCorpus
        return world.pretraining_pairs()
    return statement_pairs(world) + world.filler_pairs()


def qa_pairs(world: World, split: str, template: int | None = None) -> list[tuple[str, str]]:
    ts = range(world.config.n_qa_templates) if template is None else [template]
    return [world.render_qa(e, r, t) for e in world.split(split) for r in world.config.relations for t in ts]
