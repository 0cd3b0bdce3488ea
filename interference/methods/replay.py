"""Replay: mix pre-training data into every SFT batch.

Each step adds ``round(ratio * batch)`` examples drawn by a generator seeded with (seed, step),
so a resumed run replays the same ones; the loss is the token-weighted mean CE over the mixed
batch, as if the examples had been concatenated. Statements of every pre-training entity are
eligible, including those of held-out facts: that is what replaying pre-training data means.
``corpus``: "statements" (statements and filler lines) or "pretraining" (the whole pre-training
corpus: also the QA of the entities whose QA pre-training showed), which makes fine-tuning joint
training on old and new data (the capacity hypothesis' test).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from interference.batching import answer_loss, pack
from interference.methods.base import Method, MethodConfig, MethodError
from interference.models import model_logits


@dataclass(frozen=True)
class ReplayConfig(MethodConfig):
    ratio: float = 0.5  # replayed statements per SFT example (a third of each mixed batch)
    seed: int = 0  # which replayed examples each step draws (a generator seeded with (seed, step))
    corpus: str = "statements"  # or "pretraining": statements, filler and pre-training QA

    def __post_init__(self) -> None:
        if self.ratio <= 0:
            raise MethodError(f"replay ratio {self.ratio} must be positive (0 is plain sft).")
        if self.corpus not in ("statements", "pretraining"):
            raise MethodError(f"replay corpus {self.corpus!r} is not 'statements' or 'pretraining'.")


class Replay(Method):
    name = "replay"
    Config = ReplayConfig

    def setup(self, ctx) -> None:
        from interference.corpus import pretraining_pairs, qa_pairs
        pairs = pretraining_pairs(ctx.world)
        if self.config.corpus == "pretraining":
            pairs = pairs + qa_pairs(ctx.world, "pretrain_qa")
        self.pool = pack(ctx.tokenizer, pairs, ctx.n_ctx).to(ctx.device)

    def replay_batch(self, step: int, k: int):
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        idx = torch.randint(len(self.pool), (k,), generator=g)
        return self.pool.subset(idx.to(self.pool.ids.device))

    def loss(self, model, batch, logits, ctx):
        k = max(1, round(self.config.ratio * len(batch)))
        rb = self.replay_batch(ctx.step, k)
        ce = answer_loss(logits, batch)
        ce_r = answer_loss(model_logits(model, rb.ids), rb)
        n, m = batch.loss_mask.sum(), rb.loss_mask.sum()
        loss = (ce * n + ce_r * m) / (n + m)
        return loss, {"ce": float(ce.detach()), "replay_ce": float(ce_r.detach())}
