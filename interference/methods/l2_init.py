"""L2-to-init: cross-entropy plus ``weight * sum (theta - theta_base)^2`` over trained parameters.

A continual-learning baseline: it resists *any* weight change, where self-distillation resists
only changes of the output distribution. ``match="kl"`` sets the weight the way the paper
compared them: so that, after ``calib_steps`` steps of plain SFT, the gradient norm of the L2
term equals that of self-distillation's KL term (lambda x KL to the format teacher). At the base
weights the L2 gradient is zero, hence the short SFT probe to get a displacement to measure at.
The teacher and the probe are stages (``interference.teacher``), handed over on the context.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from interference.batching import pack
from interference.methods.base import Method, MethodConfig, MethodError, param_snapshot, weighted_sq_distance
from interference.models import model_logits

MATCHES = ("none", "kl")


@dataclass(frozen=True)
class L2InitConfig(MethodConfig):
    weight: float = 0.01  # strength of the pull to the base weights, on the *sum* of squared deltas (~1e5 params x ~1e-4 deltas -> O(1) next to CE)
    match: str = "none"  # "kl": replace weight by the KL-gradient-matched value (see module doc)
    kl_weight: float = 1.0  # the self-distillation lambda to match
    temperature: float = 0.5  # the self-distillation temperature to match
    # the positions the matched KL covers: self-distillation's own default ("all" real tokens), so
    # the weight matches the gradient of the KL that self-distillation actually applies
    positions: str = "all"
    calib_steps: int = 20  # SFT steps before measuring the two gradient norms

    def __post_init__(self) -> None:
        if self.weight < 0 or self.kl_weight < 0:
            raise MethodError("weight and kl_weight must be >= 0.")
        if self.match not in MATCHES:
            raise MethodError(f"unknown match {self.match!r}; use one of {list(MATCHES)}.")
        if self.calib_steps < 1:
            raise MethodError("calib_steps must be at least 1.")
        from interference.methods.self_distill import POSITIONS
        if self.positions not in POSITIONS:
            raise MethodError(f"unknown KL positions {self.positions!r}; use one of {list(POSITIONS)}.")


def _grad_norm(loss: torch.Tensor, params) -> float:
    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def kl_matched_weight(ctx, params_of, cfg: L2InitConfig) -> float:
    """The L2 weight whose gradient norm equals lambda x KL's at the SFT probe (``ctx.probe``,
    ``calib_steps`` plain SFT steps from the base), KL taken to the format teacher (``ctx.teacher``).
    Both come from the teacher stage (``stages()``); this function trains nothing."""
    from interference.methods.self_distill import kl_mask, token_kl

    if ctx.teacher is None or ctx.probe is None:
        raise MethodError("l2_init with match='kl' needs the format teacher and the SFT probe, which the caller "
                          "builds (interference.teacher.provide_stages); they were not given.")
    probe = ctx.probe
    for p in probe.parameters():
        p.requires_grad_(True)
    params = params_of(probe)
    anchor = {n: p.detach() for n, p in params_of(ctx.base_model)}
    bs = ctx.config.batch_size
    batch = pack(ctx.tokenizer, [(f.prompt, f.answer) for f in ctx.data.train[:bs]], ctx.n_ctx).to(ctx.device)
    with torch.no_grad():
        t_logits = model_logits(ctx.teacher, batch.ids)
    mask = kl_mask(batch, cfg.positions, ctx.tokenizer.pad_token_id)
    kl = cfg.kl_weight * token_kl(model_logits(probe, batch.ids), t_logits, mask, cfg.temperature, "forward")
    g_kl = _grad_norm(kl, params)
    g_l2 = _grad_norm(weighted_sq_distance(params, anchor), params)
    for p in probe.parameters():
        p.requires_grad_(False)
    if g_l2 == 0:
        raise MethodError("the SFT probe did not move the weights, so no L2 weight can be matched; raise calib_steps.")
    return g_kl / g_l2


class L2Init(Method):
    name = "l2_init"
    Config = L2InitConfig

    def stages(self) -> dict[str, int]:
        return {"teacher": 1, "probe": self.config.calib_steps} if self.config.match == "kl" else {}

    def setup(self, ctx) -> None:
        self.weight = self.config.weight
        if self.config.match == "kl":
            self.weight = kl_matched_weight(ctx, self.trainable_parameters, self.config)
        self.anchor = param_snapshot(self.trainable_parameters(ctx.model))

    def penalty(self, model) -> torch.Tensor:
        return weighted_sq_distance(self.trainable_parameters(model), self.anchor)

    def loss(self, model, batch, logits, ctx):
        ce, logs = super().loss(model, batch, logits, ctx)
        pen = self.penalty(model)
        return ce + self.weight * pen, {**logs, "l2": float(pen.detach()), "l2_weight": self.weight}
