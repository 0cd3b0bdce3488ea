"""Elastic weight consolidation: CE plus ``weight * sum_i F_i (theta_i - theta_base_i)^2``.

F is the diagonal empirical Fisher of the base model on pre-training statements (per-example
squared gradients of the answer log-likelihood), normalised to mean 1 over the trained
parameters so ``weight`` is on the same scale as ``l2_init``'s: EWC is L2-to-init re-weighted
towards the parameters the pre-training data depends on.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from interference.batching import answer_loss, pack
from interference.methods.base import Method, MethodConfig, MethodError, param_snapshot, weighted_sq_distance
from interference.models import model_logits


@dataclass(frozen=True)
class EWCConfig(MethodConfig):
    weight: float = 0.01  # strength of the Fisher-weighted pull to the base weights; l2_init.weight's scale (F has mean 1)
    n_fisher: int = 128  # statements the Fisher is estimated on; per-example backward passes, so kept small
    seed: int = 0  # which statements

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise MethodError(f"weight {self.weight} must be >= 0.")
        if self.n_fisher < 1:
            raise MethodError("n_fisher must be at least 1.")


def pretraining_sample(world, n: int, seed: int) -> list[tuple[str, str]]:
    from interference.corpus import pretraining_pairs
    pairs = pretraining_pairs(world)
    return random.Random(f"pretrain-sample-{seed}").sample(pairs, min(n, len(pairs)))


def diagonal_fisher(model, params, tokenizer, pairs, device) -> dict[str, torch.Tensor]:
    """Mean per-example squared gradient of the answer NLL, for each parameter in ``params``."""
    data = pack(tokenizer, pairs, int(model.cfg.n_ctx)).to(device)
    fisher = {n: torch.zeros_like(p) for n, p in params}
    was = model.training
    model.eval()
    for i in range(len(data)):
        ex = data.subset([i])
        model.zero_grad(set_to_none=True)
        answer_loss(model_logits(model, ex.ids), ex).backward()
        for n, p in params:
            if p.grad is not None:
                fisher[n] += p.grad.detach() ** 2
    model.zero_grad(set_to_none=True)
    model.train(was)
    total = sum(f.sum() for f in fisher.values())
    count = sum(f.numel() for f in fisher.values())
    scale = count / total if total > 0 else 1.0
    return {n: f * scale for n, f in fisher.items()}


class EWC(Method):
    name = "ewc"
    Config = EWCConfig

    def setup(self, ctx) -> None:
        params = self.trainable_parameters(ctx.model)
        pairs = pretraining_sample(ctx.world, self.config.n_fisher, self.config.seed)
        self.fisher = diagonal_fisher(ctx.model, params, ctx.tokenizer, pairs, ctx.device)
        self.anchor = param_snapshot(params)

    def loss(self, model, batch, logits, ctx):
        ce, logs = super().loss(model, batch, logits, ctx)
        pen = weighted_sq_distance(self.trainable_parameters(model), self.anchor, self.fisher)
        return ce + self.config.weight * pen, {**logs, "ewc": float(pen.detach())}
