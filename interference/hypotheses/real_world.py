"""The behavior_cloning and localized experiments on a real model and real closed-book QA data.

    python -m interference.run_hypothesis behavior_cloning --model DIR --data DIR --out runs/h-real
    python -m interference.run_hypothesis localized --model DIR --data DIR --out runs/h-real

Each runs its module's pre-registered experiment (the same ``PREREGISTERED`` text, hash, endpoint
statistic, summary and verdict rule: ``behavior_cloning.summarize``, ``localized_summary``) with
the synthetic world's parts replaced by their real counterparts, nothing else:

- *base model*: the given Hugging Face model (frozen; every arm fine-tunes a copy through the one
  loop); which facts it knows comes from the SliCK table of ``interference.real_data`` (few-shot
  prompts, greedy + samples, the Known-share filter), cached as for ``finetune --model``;
- *designed entities*: fictitious names from the model's own tokenizer
  (``interference.fictitious``): look-alikes that recombine sub-word pieces of the data's real
  subject names, and uuid names of ordinary word pieces that occur in no real name. A new entity
  is asked in its relation's own question ("Where was [X] born?" with X replaced);
- *watched facts*: up to ``N_WATCH`` facts of the relations that pass the Known-share filter
  (drawn once, seed 0); as everywhere, only those the base answers right count.

behavior_cloning: the watched relation is the kept relation with the most HighlyKnown facts; the
new relations are the other kept relations whose answers never occur among its answers (the
design's "no relation and no value in common"). Arms: ``unknown`` = uuid-named entities on the
new relations (their answers drawn from those relations' answers, so Unknown by construction),
``unknown_small`` its first ``small_count``, ``known`` = as many HighlyKnown facts of the new
relations (answered with the model's own alias), ``idk`` = the unknown arm answered "unknown",
``reference`` = look-alike entities on the watched relation. Never-seen questions: more uuid
entities of the same seed on the new relations, never trained.

localized: targets are HighlyKnown watched facts whose subject has at least 3 sub-word tokens
(the design's three-piece names); the j-th new entity keeps target j's tokens at the arm's
positions (``fictitious.lookalike_of``), is asked target j's relation and taught a value of that
relation that differs from target j's answer; ``uuid`` arms use uuid names with the same values,
``disjoint`` arms look-alikes built only from subjects outside the watched facts. An EQ subject
usually has one relation, so a target is one fact (synthetic targets have one per relation).

``capacity`` on a real model is its count sweep (``hypotheses.capacity_sweep``: one width, the
count of uuid facts as the grid); the consolidation axis (it pre-trains bases for longer) is
refused.
Cell keys hold the model's and the data's content fingerprints, so no cell of the synthetic
world or of another model is ever reused.
"""
from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np

from interference.data import Fact, load_qa_records
import interference.hypotheses.behavior_cloning as bc
import interference.hypotheses.localized as loc
from interference.hypotheses.arms import fixed_steps, run_arm
from interference.hypotheses.grid import Cell, seed_range
from interference.train import SFTSpec
from interference.probes import subject_states
from interference.io import config_hash
from interference.real_data import (KNOWN, RealSpec, SliCKConfig, cached_slick, data_fingerprint, exemplar_sets,
                                    few_shot_prompt, kept_relations, model_dir_fingerprint)

NAMES = ("behavior_cloning", "localized")
N_WATCH = 400  # watched facts per run: enough for a share with a few-point CI, cheap to score every evaluation
N_NEVER_SEEN = 25  # never-seen uuid entities per seed (behavior_cloning's cloned-behaviour read-out)


class RealHypothesisError(ValueError):
    """Real data that cannot give the experiment's designed sets; one sentence."""


class RealBase:
    """Stands where a ``BaseSpec`` stands in a grid: what every cell's result depends on. There is
    no consolidation axis on a given model (``pretrain.consolidation`` is None)."""

    def __init__(self, spec: RealSpec, precision: str = "fp32"):
        self.spec, self.precision = spec, precision
        self.weights = model_dir_fingerprint(spec.model)
        self.data = data_fingerprint(spec.data)
        self.pretrain = SimpleNamespace(consolidation=None)

    def to_dict(self) -> dict:
        return {"real": self.spec.to_dict(), "weights_fingerprint": self.weights, "data_fingerprint": self.data,
                "precision": self.precision}

    def hash(self) -> str:
        return config_hash({"weights": self.weights, "data": self.data, "slick": self.spec.slick,
                            "precision": self.precision})  # bf16 and fp32 runs are different results


class RealWorld:
    """The real data as the grids read it: facts with their SliCK category, one question template
    per relation, each relation's answers, and fictitious entities asked in those templates."""

    def __init__(self, records, slick: dict[str, dict], min_known_share: float):
        self.facts = [r.fact for r in records if r.fact.fact_id in slick]
        self.slick = slick
        self.relations = kept_relations(slick, min_known_share)
        self.names = sorted({f.subject for f in self.facts})
        values: dict[str, dict[str, None]] = defaultdict(dict)  # an ordered set per relation
        self.template: dict[str, Fact] = {}
        for f in self.facts:
            values[f.relation][f.answer] = None
            if f.subject and f.subject in f.prompt:
                self.template.setdefault(f.relation, f)
        self.values = {r: list(v) for r, v in values.items()}

    def category(self, f: Fact) -> str:
        return self.slick[f.fact_id]["category"]

    def as_known(self, f: Fact) -> Fact:
        """A Known fact asks for the alias the model itself gave (as ``build_real_sft_data``)."""
        return dataclasses.replace(f, answer=self.slick[f.fact_id]["answer"]) if self.category(f) in KNOWN else f

    def of(self, relations: Sequence[str], categories=None) -> list[Fact]:
        return [self.as_known(f) for f in self.facts if f.relation in relations
                and (categories is None or self.category(f) in categories)]

    def ask(self, name: str, relation: str, answer: str, fact_id: str, key_style: str) -> Fact:
        t = self.template.get(relation)
        if t is None:
            raise RealHypothesisError(f"relation {relation} has no question that contains its subject, so a "
                                      "fictitious entity cannot be asked it; drop that relation from the data.")
        return Fact(fact_id=fact_id, subject=name, relation=relation, answer=answer,
                    prompt=t.prompt.replace(t.subject, name, 1), split="fictitious", key_style=key_style,
                    entity_id=name)

    def pretraining_pairs(self) -> list[tuple[str, str]]:
        """Known facts, for methods that replay or anchor on pre-existing knowledge."""
        return [(f.prompt, f.answer) for f in self.of(self.relations, KNOWN)]


class RealContext:
    """What ``runner.run_module`` and the arms need of a ``Context``, for a given real model."""

    def __init__(self, spec: RealSpec, out: str | Path, device: str | None = None, progress: bool = True,
                 min_known_share: float = 0.3, precision: str = "auto"):
        from interference.distributed import Distributed
        from interference.models import load_hf_model
        self.dist = Distributed(precision=precision, device=device)  # the arms' autocast (and fp16 loss scaler)
        if self.dist.world_size > 1:
            raise RealHypothesisError("run_hypothesis runs in one process; start it with python -m, not accelerate "
                                      "launch (finetune is the command that spreads over processes).")
        records = load_qa_records(spec.data)
        model, tok = load_hf_model(spec.model, device=device, trust_remote_code=spec.trust_remote_code)
        slick, self.slick_dir = cached_slick(spec, model, tok, records)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)  # a frozen reference; every arm fine-tunes a copy
        self._base = (model, tok)
        self.spec = RealBase(spec, self.dist.precision)
        self.world = RealWorld(records, slick, min_known_share)
        if not self.world.relations:
            raise RealHypothesisError(f"no relation keeps >= {min_known_share:.0%} Known facts for this model, so "
                                      "there is no knowledge to watch; use a model that knows more of this data or "
                                      "lower --min-known-share.")
        self.n_layers = int(model.cfg.n_layers)
        self.out, self.device, self.progress, self.jobs = Path(out), device, progress, 1
        self.aliases = {r.fact.fact_id: tuple(r.aliases) for r in records}
        self.slick_cfg = SliCKConfig.from_dict(spec.slick)
        self.sets = exemplar_sets(records, self.slick_cfg)
        self.watch = watched_facts(self.world, self.sets, self.slick_cfg.n_shots)
        self.left_out: dict[str, str] = {}
        self._teachers: dict[str, object] = {}
        self._memo: dict[tuple, object] = {}

    def score(self, model, tok, facts):
        """Every read of a run: to the newline, any alias right, abstention by its string
        (``evaluate.read_facts``); new facts have their one answer."""
        from interference.evaluate import read_facts
        return read_facts(model, tok, facts, aliases=self.aliases)

    def memo(self, key: tuple, fn):
        """``fn()`` once per ``key``: fictitious names scan the whole vocabulary and every subject
        name (150k tokens, tens of thousands of names on EntityQuestions), and every arm and the
        pre-flight check ask for the same ones."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def base(self, spec=None):
        return self._base

    def fingerprint(self, spec=None) -> str:
        return self.spec.weights

    def cache(self) -> Path:
        return self.out / "cells"

    def teacher_facts(self) -> list[Fact]:
        """HighlyKnown facts that are not watched: what the format teacher may learn the format on."""
        watched = {f.fact_id for f in self.watch}
        facts = [f for f in self.world.of(self.world.relations, ("HighlyKnown",)) if f.fact_id not in watched]
        if not facts:
            raise RealHypothesisError("every HighlyKnown fact is watched, so none is left to train the format "
                                      "teacher of the self-distillation arm on; add data.")
        return facts

    def teacher(self, recipe, spec=None, n_facts: int = 400):
        """The frozen format teacher: one epoch on HighlyKnown facts that are not watched."""
        from interference.teacher import format_teacher
        key = config_hash(recipe.to_dict())
        if key not in self._teachers:
            facts = self.teacher_facts()
            model, tok = self._base
            facts = random.Random("format-teacher").sample(facts, min(n_facts, len(facts)))
            self._teachers[key] = format_teacher(model, tok, facts, recipe, base_dir=self.slick_dir,
                                                 fingerprint=self.spec.weights)
        return self._teachers[key]


def watched_facts(world: RealWorld, sets: dict, n_shots: int, relations: Sequence[str] | None = None) -> list[Fact]:
    """Up to ``N_WATCH`` facts of the kept relations, each asked in the few-shot form that decided
    its Known-ness (SliCK's first exemplar set): forgetting is then read on the format and the
    facts that SliCK called Known, not on a zero-shot subset that SFT's format teaching favours."""
    facts = world.of(relations or world.relations)
    everything = len(world.of(world.relations))
    # leave a quarter of all facts (at most 100) unwatched: the format teacher and the rate sweep's
    # Known-only run train on Known facts that no arm watches
    n = min(N_WATCH, len(facts), everything - min(everything // 4, 100))
    picked = sorted(random.Random("real-watch").sample(facts, n), key=lambda f: f.fact_id)
    return [dataclasses.replace(f, prompt=few_shot_prompt(f, sets[f.relation][0], n_shots)) for f in picked]


def _module(mod, cells, summarize) -> SimpleNamespace:
    """``mod`` (its NAME and PREREGISTERED) with the real world's cells and summary."""
    return SimpleNamespace(NAME=mod.NAME, PREREGISTERED=mod.PREREGISTERED, cells=cells, summarize=summarize,
                           __name__=f"{mod.__name__} (real model)")


# ------------------------------------------------------------------ behavior_cloning
def bc_relations(world: RealWorld) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(watched, new): the kept relation with the most HighlyKnown facts, and every other kept
    relation none of whose answers is one of the watched relation's."""
    highly = {r: len(world.of([r], ("HighlyKnown",))) for r in world.relations}
    watched = max(world.relations, key=lambda r: (highly[r], r))
    used = set(world.values[watched])
    new = tuple(r for r in world.relations if r != watched and not used & set(world.values[r]))
    if not new:
        raise RealHypothesisError(f"behavior_cloning needs a second kept relation whose answers the watched relation "
                                  f"{watched} never gives; kept relations {world.relations} share answers or there "
                                  "is only one, so add relations (or lower --min-known-share).")
    return (watched,), new


MIN_COUNT = 4  # fewer new entities per arm than this and no rate or share can be read


def cap_note(ctx) -> str:
    """What the counts were drawn from: all facts, or those SliCK categorised under the cap."""
    cap = ctx.slick_cfg.max_per_relation
    return (f" of the at most {cap} facts per relation that SliCK categorised (--max-per-relation {cap}; raise it "
            "to categorise more)" if cap is not None else "")


def bc_config(quick: bool, ctx: "RealContext") -> bc.BehaviorCloningConfig:
    """The design's config with its counts adapted to what the model knows: ``count`` new
    entities per arm is at most what the known arm can match with HighlyKnown facts of the new
    relations (``small_count`` keeps its quarter)."""
    watched, new = bc_relations(ctx.world)
    base = (bc.BehaviorCloningConfig(seeds=2, count=8, small_count=3, sft=SFTSpec(max_steps=40, batch_size=8,
                                                                                  eval_every=10))
            if quick else bc.BehaviorCloningConfig())
    have = len(ctx.world.of(new, ("HighlyKnown",)))
    count = min(base.count, have // len(new))
    if count < MIN_COUNT:
        raise RealHypothesisError(f"the known arm needs at least {MIN_COUNT * len(new)} HighlyKnown facts of relations "
                                  f"{list(new)} but the model knows {have}{cap_note(ctx)}; add data.")
    small = max(1, round(count * base.small_count / base.count))
    return dataclasses.replace(base, count=count, small_count=small, watched_relations=watched, new_relations=new)


def _values(world: RealWorld, relation: str, n: int, rng: random.Random) -> list[str]:
    return [rng.choice(world.values[relation]) for _ in range(n)]


def bc_arm_facts(ctx: RealContext, cfg, arm: str, seed: int) -> tuple[list[Fact], list[Fact]]:
    """(training facts of ``arm``, never-seen questions) for one seed."""
    from interference.fictitious import lookalike_names, uuid_names
    from interference.sft_data import relabel_idk
    world, (_, tok) = ctx.world, ctx.base()
    names = ctx.memo(("uuid", cfg.count + N_NEVER_SEEN, 30_000 + seed),
                     lambda: uuid_names(tok, world.names, cfg.count + N_NEVER_SEEN, seed=30_000 + seed))
    rng = random.Random(f"bc-real-values-{seed}")
    values = {r: _values(world, r, len(names), rng) for r in cfg.new_relations}

    def asked(ns, relations, vals, style):
        return [world.ask(n, r, vals[r][i], f"fict:{style}:{seed}:{i}:{r}", style)
                for i, n in enumerate(ns) for r in relations]
    never = asked(names[cfg.count:], cfg.new_relations, {r: v[cfg.count:] for r, v in values.items()}, "never")
    if arm in ("unknown", "idk", "unknown_small"):
        n = cfg.small_count if arm == "unknown_small" else cfg.count
        facts = asked(names[:n], cfg.new_relations, values, "uuid")
        return (relabel_idk(facts) if arm == "idk" else facts), never
    if arm == "known":
        pool = world.of(cfg.new_relations, ("HighlyKnown",))
        need = cfg.count * len(cfg.new_relations)
        if len(pool) < need:
            raise RealHypothesisError(f"the known arm needs {need} HighlyKnown facts of relations "
                                      f"{list(cfg.new_relations)} but the model knows {len(pool)}; lower the count "
                                      "(--quick) or add data.")
        return random.Random(f"bc-known-{seed}").sample(pool, need), never
    if arm == "reference":
        look = ctx.memo(("lookalike", cfg.count, 30_000 + seed),
                        lambda: lookalike_names(tok, world.names, cfg.count, seed=30_000 + seed))
        vals = {r: _values(world, r, cfg.count, rng) for r in cfg.watched_relations}
        return asked(look, cfg.watched_relations, vals, "semantic"), never
    raise ValueError(f"unknown arm {arm!r}")


def bc_cells(cfg, ctx: RealContext) -> list[Cell]:
    out = []
    for seed in range(cfg.seeds):
        for arm in bc.ARMS:
            train, never = bc_arm_facts(ctx, cfg, arm, seed)
            sft = fixed_steps(cfg.sft, cfg.sft.max_steps, seed)
            key = {"base": ctx.spec.hash(), "level": "default", "seed": seed, "arm": arm, "n_train": len(train),
                   "sft": sft.to_dict(), "watched": list(cfg.watched_relations), "new": list(cfg.new_relations)}
            out.append(Cell(f"bc-real-{arm}", key,
                            (lambda t=train, f=sft, nv=never: run_arm(ctx, ctx.spec, t, ctx.watch, f,
                                                                      extra={"never_seen": nv})),
                            f"{arm} seed {seed}", base=ctx.spec))
    return out


# ------------------------------------------------------------------ localized
MIN_TARGETS = 8
RARE_PIECE = 0.02  # a kept piece is target-specific when at most 2% of subjects' names hold it (and >= 2 may)


# The real-model default seed count of localized's core arms, and the seeds its secondary arms
# run on. Why 20: on the knowing fixture five seeds could not resolve a dose slope of ~0.02 (the
# pilot's [-0.009, 0.051]); twenty, fixed from the pilot's spread, did (docs/localized_fixture_
# confirmation.md). The secondary arms describe and the rule never reads them, so they keep the
# design's five (docs/localized_fixture_default.md).
REAL_SEEDS = 20
SECONDARY_SEEDS = 5


def loc_config(quick: bool, ctx: "RealContext", leave_out: Sequence[str] = ()) -> loc.LocalizedConfig:
    """The design's config with the real-model seed count (``REAL_SEEDS``), ``n_targets`` adapted
    to the targets the model knows (``targets_pool``) and the arms of ``leave_out`` dropped."""
    base = (loc.LocalizedConfig(seeds=2, n_targets=8, steps=40, sft=SFTSpec(batch_size=8, eval_every=10,
                                                                             learned_at=0.95), arms=loc.CORE)
            if quick else loc.LocalizedConfig(seeds=REAL_SEEDS))
    pool = targets_pool(ctx)
    n = min(base.n_targets, len(pool))
    if n < MIN_TARGETS:
        raise RealHypothesisError(f"only {len(pool)} watched HighlyKnown facts have a subject of 3 or more tokens whose "
                                  f"first two are specific to it (in at most {RARE_PIECE:.0%} of subjects){cap_note(ctx)},"
                                  f" fewer than {MIN_TARGETS}; add data with longer subject names.")
    return dataclasses.replace(base, n_targets=n, arms=tuple(a for a in base.arms if a not in leave_out))


def _piece_subjects(ctx) -> dict[int, int]:
    """Token id -> how many subject names hold it."""
    from interference.fictitious import name_pieces
    tok = ctx.base()[1]

    def count():
        c: dict[int, int] = defaultdict(int)
        for n in ctx.world.names:
            for i in set(name_pieces(tok, n)):
                c[i] += 1
        return dict(c)
    return ctx.memo(("piece_subjects",), count)


def targets_pool(ctx) -> list[Fact]:
    """HighlyKnown watched facts of distinct subjects with >= 3 sub-word tokens whose first two
    tokens are *specific* to the subject (held by at most ``RARE_PIECE`` of subject names): with
    BPE, "keep the first piece" can keep a first-name piece that hundreds of subjects share, and
    then the dose is not aimed at the target."""
    from interference.fictitious import name_pieces
    tok = ctx.base()[1]
    held = _piece_subjects(ctx)
    limit = max(2, int(RARE_PIECE * len(ctx.world.names)))
    seen, pool = set(), []
    for f in ctx.watch:
        p = name_pieces(tok, f.subject)
        if ctx.world.category(f) == "HighlyKnown" and f.subject not in seen and len(p) >= 3 \
                and all(held.get(i, 0) <= limit for i in p[:2]) and len(set(ctx.world.values[f.relation]) - {f.answer}):
            seen.add(f.subject)
            pool.append(f)
    return pool


def targets_of(ctx: RealContext, n: int, seed: int) -> list[Fact]:
    """``n`` targets of ``targets_pool``, drawn by seed."""
    pool = targets_pool(ctx)
    if len(pool) < n:
        raise RealHypothesisError(f"only {len(pool)} watched HighlyKnown facts can be targets, fewer than the {n} "
                                  "asked for; add data with longer subject names.")
    return random.Random(f"localized-targets-{seed}").sample(pool, n)


def loc_new_names(ctx: RealContext, arm, targets: Sequence[Fact], seed: int) -> list[str]:
    from interference.fictitious import lookalike_names, lookalike_of, name_pieces, pieces_by_position, uuid_names
    world, tok = ctx.world, ctx.base()[1]
    if arm.keys == "semantic":
        rng = random.Random(f"localized-names-{seed}-{arm.keep}")
        taken = set(world.names)
        by_pos = ctx.memo(("by_position",), lambda: pieces_by_position(tok, world.names))
        return [lookalike_of(tok, t.subject, arm.keep, by_pos, taken, rng) for t in targets]
    if arm.keys == "uuid":
        return ctx.memo(("uuid", len(targets), 7_000 + seed),
                        lambda: uuid_names(tok, world.names, len(targets), seed=7_000 + seed))
    watched = {f.subject for f in ctx.watch}  # disjoint: pieces of never-watched subjects, none a target's
    banned = {i for t in targets for i in name_pieces(tok, t.subject)}
    donors = [x for x in world.names if x not in watched]
    return lookalike_names(tok, donors, len(targets), seed=7_000 + seed, banned=banned)


def _run_loc_arm(cfg, ctx: RealContext, arm_name: str, seed: int) -> dict:
    from interference.fictitious import name_pieces
    from interference.hypotheses.localized_train import patch_forgotten, train_arm
    arm = loc.ARMS[arm_name]
    model, tok = ctx.base()
    targets = targets_of(ctx, cfg.n_targets, seed)
    rng = random.Random(f"localized-values-{seed}")
    values = [rng.choice([v for v in ctx.world.values[t.relation] if v != t.answer]) for t in targets]
    names = loc_new_names(ctx, arm, targets, seed)
    train = [ctx.world.ask(n, t.relation, v, f"fict:{arm_name}:{seed}:{j}", arm.keys)
             for j, (n, t, v) in enumerate(zip(names, targets, values))]
    watch = ctx.watch
    res = train_arm(ctx, cfg, arm, train, watch, seed)
    out = {"arm": arm_name, "seed": seed, "fact_ids": [f.fact_id for f in watch],
           "entity_ids": [f.entity_id for f in watch], "target_eids": sorted({t.entity_id for t in targets}),
           "pair_value": {t.fact_id: v for t, v in zip(targets, values)}, "new_names": names,
           "new_name_targets": [t.subject for t in targets], "reads": res.reads}
    if arm_name in loc.PATCH_ARMS:
        out["patching"] = patch_forgotten(model, res.model, tok, watch, seed, ctx.n_layers, arm.keep)
    if arm_name in loc.PREDICT_ARMS:
        from interference.metrics.overlap import overlap_with_new
        from interference.metrics.predictors import gradient_conflict, shared_pieces
        mid = (ctx.n_layers - 1) // 2
        ov = overlap_with_new(subject_states(model, tok, watch, [mid]), [f.relation for f in watch],
                              subject_states(model, tok, train, [mid]), [f.relation for f in train]).max
        out["predictors"] = {
            "overlap_mid": np.round(ov[0], 5).tolist(),
            "shared_pieces": shared_pieces([name_pieces(tok, f.subject) for f in watch],
                                           [name_pieces(tok, n) for n in names]).tolist(),
            "gradient_conflict": np.round(gradient_conflict(model, tok, watch, train), 6).tolist()}
    return out


KNOWN_ONLY = "known_only"  # not an arm of the design: the drift reference beside it


class _ReadEvery:
    """The watched facts' correctness at every evaluation after step 0 (``on_eval`` also runs
    after the last update), as bit strings keyed by step."""

    def __init__(self, read):
        self.read, self.bits = read, {}

    def on_eval(self, state) -> None:
        if state.step > 0:
            self.bits[str(int(state.step))] = "".join("1" if x else "0" for x in self.read(state.model))


def _run_known_only(cfg, ctx: RealContext, seed: int) -> dict:
    """Known-only SFT beside a seed's arms: ``n_targets`` HighlyKnown facts that are not watched
    (sampled by seed), the arms' rate, batch, steps and seed, the watched facts read at every
    evaluation, so its drift can be read at the step each arm's effect is read at
    (``known_only_drift_at``) instead of only after the whole budget."""
    from interference.evaluate import outcomes
    from interference.train import finetune_on
    model, tok = ctx.base()
    pool = ctx.teacher_facts()
    picked = random.Random(f"localized-known-only-{seed}").sample(pool, min(cfg.n_targets, len(pool)))
    spec = dataclasses.replace(cfg.sft, seed=seed, max_steps=cfg.steps, learned_at=1.01, method="sft",
                               method_options={})
    watch = ctx.watch
    reader = _ReadEvery(lambda m: outcomes(m, tok, watch, ctx.score)[0])
    finetune_on(model, tok, picked, spec, world=ctx.world, callbacks=[reader], dist=ctx.dist)
    return {"arm": KNOWN_ONLY, "seed": seed, "fact_ids": [f.fact_id for f in watch],
            "trained_ids": [f.fact_id for f in picked], "correct_at": reader.bits}


def known_only_drift_at(results, seeds, arm: str = "share2") -> dict:
    """Known-only drift under the effect's own conditions, per seed: the share of the base-known
    watched facts the seed's Known-only run gets wrong at the step where ``arm`` reached the
    learning criterion ("matched"), and at the last step ("final"); each with its mean and 95%
    t-interval over the seeds that have both cells. The drift the learning-rate rule records is
    read on one seed, on a sample of the watched facts, after the whole budget."""
    from interference.hypotheses.localized_summary import _bool, index_results
    from interference.metrics.forgetting import forgetting_rate
    from interference.metrics.stats import estimate
    from interference.records import FactOutcomes
    base, runs = index_results(list(results))
    fids = base["fact_ids"]
    before = FactOutcomes.from_mask(fids, np.array(base["base_ok"], bool))
    rows = []
    for s in seeds:
        k, a = runs.get((s, KNOWN_ONLY)), runs.get((s, arm))
        if k is None or a is None or k["fact_ids"] != fids:
            continue
        learned = a["reads"].get("learned")
        last = max(k["correct_at"], key=int)
        drift = lambda step: forgetting_rate(before, FactOutcomes.from_mask(fids, _bool(k["correct_at"][step])))  # noqa: E731
        rows.append({"seed": s, "matched_step": learned["step"] if learned else None,
                     "matched": drift(str(learned["step"])) if learned and str(learned["step"]) in k["correct_at"]
                     else float("nan"), "final_step": int(last), "final": drift(last)})
    return {"arm": arm, "matched": estimate([r["matched"] for r in rows]),
            "final": estimate([r["final"] for r in rows]), "per_seed": rows,
            "definition": f"share of the base-known watched facts wrong after Known-only SFT ({KNOWN_ONLY} cell: the "
                          f"arms' rate, batch, steps and seed), read at the step where the seed's {arm} arm learned its "
                          "new facts (matched) and at the last step (final)"}


def _base_eval(ctx: RealContext) -> dict:
    from interference.evaluate import read_facts
    model, tok = ctx.base()
    res = read_facts(model, tok, ctx.watch, aliases=ctx.aliases, with_gold=True)
    return {"arm": "base", "fact_ids": [r.fact_id for r in res], "base_ok": [r.correct for r in res],
            "gold_logprob": [float(f"{r.gold_logprob:.6g}") for r in res]}


def loc_cells(cfg, ctx: RealContext) -> list[Cell]:
    unknown = [a for a in cfg.arms if a not in loc.ARMS]
    if unknown:
        raise ValueError(f"unknown localized arm(s) {unknown}; choose from {list(loc.ARMS)}.")

    def key(**kw):
        return {"base": ctx.spec.hash(), "hypothesis": loc.NAME,
                "cfg": {k: v for k, v in cfg.to_dict().items() if k not in ("seeds", "first_seed", "arms")}, **kw}
    out = [Cell("localized-real-base", key(arm="base"), lambda: _base_eval(ctx), "base", base=ctx.spec)]
    core = [a for a in loc.CORE if a in cfg.arms]
    seeds = list(seed_range(cfg))
    order = [(s, a) for s in seeds for a in core + [KNOWN_ONLY]]
    order += [(s, a) for s in seeds[:SECONDARY_SEEDS] for a in cfg.arms if a not in loc.CORE]
    for seed, arm in order:
        if arm == KNOWN_ONLY:
            out.append(Cell(f"localized-real-{arm}", key(arm=arm, seed=seed), (lambda s=seed: _run_known_only(cfg, ctx, s)),
                            f"{arm} seed {seed}", base=ctx.spec))
            continue
        out.append(Cell(f"localized-real-{arm}", key(arm=arm, spec=dataclasses.asdict(loc.ARMS[arm]), seed=seed),
                        (lambda a=arm, s=seed: _run_loc_arm(cfg, ctx, a, s)), f"{arm} seed {seed}", base=ctx.spec))
    return out


# ------------------------------------------------------------------ entry point
def _loc_drift(cfg, results, v: dict) -> None:
    """localized's drift reference read under the effect's conditions (``known_only_drift_at``),
    in the verdict and its headline, and how many seeds the secondary arms ran on."""
    d = known_only_drift_at(results, list(seed_range(cfg)))
    v["known_only_drift_matched"] = d
    v["headline"] = list(v["headline"]) + [
        ("Known-only drift at share2's learned step (same seeds)", d["matched"]),
        (f"Known-only drift at step {cfg.steps} (same seeds)", d["final"])]
    secondary = [a for a in cfg.arms if a not in loc.CORE]
    v["seeds_by_arm"] = {a: (min(cfg.seeds, SECONDARY_SEEDS) if a in secondary else cfg.seeds) for a in cfg.arms}


def _summary_with_lr(summarize, forgetting_key, arms: Sequence[str] | None = None, extra=None):
    """The module's summary plus what a real run must record: the learning rate and how it was
    chosen, Known-only drift, arms left out, how watched facts were read; refused (one sentence)
    when an arm's watched forgetting says the model was destroyed."""
    from interference.hypotheses.real_lr import refuse_destroyed_arms

    def wrapped(cfg, results, ctx):
        v = summarize(cfg, results, ctx)
        names = arms if arms is not None else getattr(cfg, "arms", bc.ARMS)
        stat = lambda k: (v["statistics"].get(k) or {}).get("value")  # noqa: E731
        forget = {a: stat(forgetting_key(a)) for a in names}
        forget = {a: x for a, x in forget.items() if x is not None}
        # an abstention is what the idk arm teaches, not damage: only wrong answers say destroyed
        wrong = {a: x - (stat(f"abstention_{a}") or 0.0) for a, x in forget.items()}
        refuse_destroyed_arms(wrong, ctx.lr_record["value"])
        if extra is not None:
            extra(cfg, results, v)
        v["learning_rate"] = ctx.lr_record
        v["known_only_drift"] = ctx.lr_record["known_only_drift"]
        v["watched_forgetting_by_arm"] = forget
        v["watched_wrong_not_abstaining_by_arm"] = wrong
        v["left_out_arms"] = dict(ctx.left_out)
        v["reading"] = ("greedy to the newline (at most 24 tokens), exact match after normalisation against any "
                        "alias, abstention by its string, confidence = probability of the whole answer; watched "
                        f"facts asked {ctx.slick_cfg.n_shots}-shot with SliCK's first exemplar set")
        return v
    return wrapped


def prepare(name: str, spec: RealSpec, out, quick: bool, seeds: int | None, device=None, progress: bool = True,
            min_known_share: float = 0.3, precision: str = "auto", lr: float | None = None,
            leave_out: Sequence[str] = (), first_seed: int | None = None):
    """(module stand-in, config, context) of hypothesis ``name`` on the real model and data.

    The learning rate is ``lr`` when given, else the pre-grid rule's (``real_lr.choose_lr``);
    ``leave_out`` names localized arms to drop, and an optional arm whose names this data cannot
    give is dropped too (both recorded in the verdict); a core arm that cannot be built refuses."""
    from interference.fictitious import FictitiousError
    from interference.hypotheses.real_lr import LearningRateError, choose_lr
    if name not in NAMES:
        raise RealHypothesisError(f"{name!r} does not run on a real model; choose one of {list(NAMES)}.")
    if leave_out and name == "behavior_cloning":
        raise RealHypothesisError("behavior_cloning's endpoint and checks read all five of its arms, so none can be "
                                  "left out; drop --leave-out.")
    bad = [a for a in leave_out if a not in loc.ARMS]
    if bad or any(a in loc.CORE for a in leave_out):
        raise RealHypothesisError(f"--leave-out {','.join(leave_out)}: localized arms that may be left out are "
                                  f"{[a for a in loc.ARMS if a not in loc.CORE]} (the core arms {list(loc.CORE)} carry "
                                  "the endpoint).")
    ctx = RealContext(spec, out, device=device, progress=progress, min_known_share=min_known_share,
                      precision=precision)
    ctx.left_out = {a: "--leave-out" for a in leave_out}
    if name == "behavior_cloning":
        cfg = bc_config(quick, ctx)
        ctx.watch = watched_facts(ctx.world, ctx.sets, ctx.slick_cfg.n_shots, cfg.watched_relations)
        module = _module(bc, bc_cells, _summary_with_lr(bc.summarize, lambda a: f"forgetting_{a}"))
        steps, n_new, learned_at, sft = cfg.sft.max_steps, cfg.count * len(cfg.new_relations), bc.LEARNED_AT, cfg.sft
    else:
        cfg = loc_config(quick, ctx, leave_out)
        module = _module(loc, loc_cells, _summary_with_lr(loc.summarize, lambda a: f"final/{a}/forget_all", extra=_loc_drift))
        steps, n_new, learned_at, sft = cfg.steps, cfg.n_targets, cfg.sft.learned_at, cfg.sft
    if seeds is not None:
        cfg = dataclasses.replace(cfg, seeds=seeds)
    if first_seed is not None:
        if not hasattr(cfg, "first_seed"):
            raise RealHypothesisError(f"--first-seed applies to localized, not {name}; leave it out.")
        cfg = dataclasses.replace(cfg, first_seed=first_seed)
    # every designed set is built once here (no training), so data that cannot give them is
    # refused before the output directory is claimed
    if name == "behavior_cloning":
        module.cells(cfg, ctx)
    else:
        keep = []
        for arm in cfg.arms:
            try:
                for seed in seed_range(cfg):
                    loc_new_names(ctx, loc.ARMS[arm], targets_of(ctx, cfg.n_targets, seed), seed)
                keep.append(arm)
            except FictitiousError as e:
                if arm in loc.CORE:
                    raise
                ctx.left_out[arm] = f"the data cannot give its names: {e}"
        cfg = dataclasses.replace(cfg, arms=tuple(keep))
        if any(loc.ARMS[a].method == "self_distill" for a in cfg.arms):
            ctx.teacher_facts()
    try:
        ctx.lr_record = choose_lr(ctx, sft, steps, n_new, learned_at, given=lr)
    except LearningRateError as e:
        raise RealHypothesisError(str(e)) from None
    cfg = dataclasses.replace(cfg, sft=dataclasses.replace(cfg.sft, lr=ctx.lr_record["value"]))
    return module, cfg, ctx
