"""The one training loop: every weight update in the package goes through ``train_loop``.

Pre-training, the format teacher, fine-tuning (``interference.train``) and the hypothesis grids
(``train.finetune_on``) all call it, so they share one optimizer (AdamW), one
schedule (linear warm-up, then cosine decay to ``min_lr_ratio``), one way to draw batches (an
epoch permutation that is a pure function of (seed, epoch), last partial batch kept) and gradient
clipping. A result that differs between two of them then differs because of their data or
settings, never because one loop dropped a batch or skipped the warm-up.

What a caller adds comes in through callbacks, objects with any of
``on_start(state)``, ``on_eval(state)``, ``on_step(state)``, ``on_end(state)``:

- ``on_start`` runs once before training (a checkpoint callback restores ``state.step`` here);
- ``on_eval`` runs at step 0 of a fresh run, every ``eval_every`` updates and after the last one,
  with the model in eval mode; it may set ``state.stop = True`` (stop-when-learned);
- ``on_step`` runs after every update, after any evaluation of that step (checkpoints go here,
  so they hold the evaluation's results);
- ``on_end`` runs once after training, also after an early stop.

A loss that is non-finite or explodes stops the loop with ``DivergenceError`` naming the step, before
that update is applied (``check_divergence``: the rule and why).

Ready-made callbacks live in ``interference.callbacks`` (checkpoints/resume, stop-when-learned,
in-memory activation snapshots); fine-tuning adds its timeline and the user's probe and
gradient-alignment callbacks on top.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from interference.batching import Packed, answer_loss, length_groups, needed_lengths
from interference.models import model_logits


@dataclass(frozen=True)
class LoopConfig:
    """Optimizer, schedule and batching of one training run; JSON round-trip."""
    lr: float
    batch_size: int
    steps: int
    warmup_frac: float = 0.05  # share of ``steps`` spent warming up (ignored when warmup_steps is set)
    warmup_steps: int | None = None  # absolute warm-up length (pre-training states it in steps)
    min_lr_ratio: float = 0.1  # cosine decays to 10% of lr
    # Decay towards zero is itself a forgetting force, so fine-tuning keeps it at 0; pre-training sets 0.1.
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)  # beta2 0.95: the usual choice for small transformers
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    seed: int = 0  # data order: batches are a pure function of (seed, step)
    eval_every: int | None = None  # None: evaluate at the start and after the last update only

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.lr <= 0 or self.batch_size < 1 or self.steps < 1:
            raise ValueError(f"lr {self.lr}, batch_size {self.batch_size} and steps {self.steps} must be positive.")
        if not 0 <= self.warmup_frac < 1 or (self.warmup_steps is not None and self.warmup_steps < 0):
            raise ValueError(f"warm-up ({self.warmup_frac} of the steps, or {self.warmup_steps} steps) must be "
                             "a share in [0, 1) or a non-negative step count.")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"eval_every {self.eval_every} must be a positive step count (or None).")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("grad_clip and weight_decay must be >= 0.")

    @property
    def warmup(self) -> int:
        """Warm-up length in steps."""
        return self.warmup_steps if self.warmup_steps is not None else int(self.warmup_frac * self.steps)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, d: dict) -> "LoopConfig":
        from interference.io import check_fields
        return cls(**check_fields(cls, d, ValueError, "loop config"))

    @classmethod
    def from_settings(cls, settings: Any, **varying: Any) -> "LoopConfig":
        """The loop settings of a run-settings config (fine-tuning, a grid's SFT spec, the format
        teacher's recipe, pre-training): every ``LoopConfig`` field that ``settings`` has under the
        same name, then ``varying`` (what the caller computes: the step count, a phase's warm-up
        and floor). Why by name: a loop field added here reaches every run kind that states it,
        with no translation table to extend in five places; a field a settings class lacks keeps
        the loop's default."""
        unknown = sorted(set(varying) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"{unknown} are not LoopConfig fields.")
        shared = {f.name: getattr(settings, f.name) for f in dataclasses.fields(cls) if hasattr(settings, f.name)}
        return cls(**{**shared, **varying})


# ------------------------------------------------------------------ schedule, optimizer, batches
def lr_multiplier(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(params: Sequence[torch.nn.Parameter], cfg: LoopConfig):
    """(AdamW, LambdaLR) for ``params``: the only optimizer construction in the package."""
    opt = torch.optim.AdamW(list(params), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    total, warmup, floor = cfg.steps, cfg.warmup, cfg.min_lr_ratio
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, total, warmup, floor))
    return opt, sched


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """The batches of one epoch (last partial one kept): a pure function of (seed, epoch), so a
    resumed run replays them and every example is seen once per epoch."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return [perm[i: i + batch_size] for i in range(0, n, batch_size)]


def batch_at(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the batch of update ``step`` (0-based) over ``n`` examples."""
    if n < 1:
        raise ValueError("there is nothing to train on (0 examples).")
    per_epoch = math.ceil(n / batch_size)
    epoch, k = divmod(step, per_epoch)
    return epoch_batches(n, batch_size, seed, epoch)[k]


def steps_for_epochs(n: int, batch_size: int, epochs: int) -> int:
    return epochs * math.ceil(n / batch_size)


# ------------------------------------------------------------------ the loop
@dataclass
class LoopState:
    """What callbacks see. ``step`` = updates done so far; ``loss`` = the last update's loss."""
    model: Any
    params: list
    opt: Any
    sched: Any
    cfg: LoopConfig
    step: int = 0
    loss: float | None = None
    logs: dict = field(default_factory=dict)  # the last loss_fn logs (method terms such as "kl")
    postfix: dict = field(default_factory=dict)  # shown on the progress bar after each evaluation
    stop: bool = False  # set by a callback to end training after this step
    resumed: bool = False  # set by a checkpoint callback that restored a run
    skipped: int = 0  # fp16 only: updates the loss scaler skipped because a gradient was inf/nan


LossFn = Callable[[Any, Packed, int], "tuple[torch.Tensor, dict]"]


def default_loss(model, batch: Packed, step: int) -> tuple[torch.Tensor, dict]:
    """Cross-entropy on the answer tokens (pre-training, plain SFT, the format teacher)."""
    ce = answer_loss(model_logits(model, batch.ids), batch)
    return ce, {}


def _call(callbacks: Sequence, hook: str, state: LoopState) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)


def _eval(callbacks: Sequence, state: LoopState) -> None:
    was = state.model.training
    state.model.eval()
    _call(callbacks, "on_eval", state)
    state.model.train(was)


# Fixed cost of one more forward/backward call on a CPU, in tokens: a d128 4-layer step takes
# a few ms more as two calls of 64 rows than as one of 128 (x 12 tokens ~ 136 ms); 128 tokens timed
# best on the default corpus (about two groups per batch: 0.145 -> 0.122 s per step on one thread).
GROUP_OVERHEAD_TOKENS = {"cpu": 128.0}


def _length_parts(rows: torch.Tensor, factor: float, weights: torch.Tensor, lengths: torch.Tensor,
                  device: torch.device) -> list[tuple[torch.Tensor, float, int]]:
    """(rows, loss factor, width) of each length group of one micro-batch. Each group's loss is a
    mean over its own answer tokens, so weighting it by its share of the micro-batch's answer
    tokens gives back the micro-batch's mean exactly (up to float rounding)."""
    total = float(weights[rows].sum())
    if total == 0:  # no answer token to weight by: one call, trimmed
        return [(rows, factor, int(lengths[rows].max()))]
    overhead = GROUP_OVERHEAD_TOKENS.get(device.type, float("inf"))  # CUDA: one call, just trimmed
    return [(rows[g], factor * (float(weights[rows[g]].sum()) / total), int(lengths[rows[g]].max()))
            for g in length_groups(lengths[rows], overhead)]


class DivergenceError(ValueError):
    """Training diverged (a non-finite or exploding loss); the message names the step."""


# A loss above this multiple of the run's first loss (and of 1, so that a base that already knows
# its facts, first loss ~0.01, may still fluctuate) is divergence. Cross-entropy over a vocabulary of
# V tokens starts near log V and every method's loss here is a few such terms, so a healthy run
# stays far below 1000 x; an lr of 1e6 reaches 1e13 within steps.
EXPLODE_FACTOR = 1000.0


def check_divergence(loss: float, first: float | None, step: int, fp16: bool = False) -> None:
    """Stop a run whose loss is non-finite or has exploded (``EXPLODE_FACTOR``): its later updates
    and every number computed from them would be noise reported as results. Under fp16 a non-finite
    loss is the loss scaler's business (it skips that update and lowers the scale), so only the
    explosion rule applies there. Reads the loss only; a healthy run is unchanged bit for bit."""
    if not fp16 and not math.isfinite(loss):
        raise DivergenceError(f"training diverged at step {step}: the loss is {loss}; lower the learning rate "
                              "(--lr) or check the data, then start the run again in a fresh --out.")
    if first is not None and math.isfinite(first) and math.isfinite(loss) and loss > EXPLODE_FACTOR * max(first, 1.0):
        raise DivergenceError(f"training diverged at step {step}: the loss is {loss:.3g}, more than "
                              f"{EXPLODE_FACTOR:g} x its first value {first:.3g}; lower the learning rate (--lr), "
                              "then start the run again in a fresh --out.")


def train_loop(model, params: Sequence[torch.nn.Parameter], data: Packed, cfg: LoopConfig,
               loss_fn: LossFn = default_loss, callbacks: Sequence = (), progress: bool = False,
               desc: str = "train", dist=None, group_lengths: bool = False,
               expected_steps: int | None = None) -> LoopState:
    """Train ``params`` of ``model`` on ``data`` for ``cfg.steps`` updates (or until a callback
    stops it) and return the final state. ``loss_fn(model, batch, step) -> (loss, logs)``.

    ``dist`` (an ``interference.distributed.Distributed``) spreads each global batch over the
    processes of ``accelerate launch`` and over gradient-accumulation micro-batches; without it,
    or with one process and no accumulation, every number is what a plain step computes.

    ``group_lengths`` runs each micro-batch as groups of similar length, each trimmed to its
    longest example (``batching.length_groups``): the same loss and gradient with less padding.
    Only for a loss that is a mean over answer tokens and reads nothing past them (``default_loss``,
    pre-training); a method's extra terms (a KL over every real token, a replay batch drawn per
    call) would be weighted or drawn differently.

    ``expected_steps``: the progress bar's total when a callback is expected to stop the run well
    before ``cfg.steps`` (pre-training's memorisation phase runs to a criterion under a 20,000-step
    cap); the bar grows towards ``cfg.steps`` if the run outlasts it. Only the bar reads it."""
    from interference.distributed import Distributed
    dist = dist if dist is not None else Distributed.single()
    dist.check_batch(cfg.batch_size)
    weights = data.loss_mask.sum(1)  # answer tokens per example: what a micro-batch's loss is weighted by
    lengths = needed_lengths(data.loss_mask).cpu() if group_lengths else None
    cpu_weights = weights.cpu() if group_lengths else None  # the groups are chosen on the CPU
    params = [p for p in params]
    if not params:
        raise ValueError("no parameter is trainable, so training would change nothing.")
    dev = next(iter(params)).device
    opt, sched = make_optimizer(params, cfg)
    state = LoopState(model=model, params=params, opt=opt, sched=sched, cfg=cfg)
    _call(callbacks, "on_start", state)
    start = state.step
    first = None  # the first loss this process computed: what "exploding" is measured against
    total = min(cfg.steps, max(expected_steps, start + 1)) if expected_steps else cfg.steps
    bar = tqdm(total=total, initial=start, desc=desc, disable=not progress, dynamic_ncols=True)
    if start == 0:
        _eval(callbacks, state)
    model.train()
    for step in range(start, cfg.steps):
        if state.stop:
            break
        idx = batch_at(step, len(data), cfg.batch_size, cfg.seed)
        opt.zero_grad(set_to_none=True)
        loss, logs = torch.zeros((), device=dev), {}
        for micro, micro_factor in dist.micro_batches(idx, weights):
            parts = ([(micro, micro_factor, None)] if lengths is None
                     else _length_parts(micro, micro_factor, cpu_weights, lengths, dev))
            for rows, factor, width in parts:
                batch = data.subset(rows.to(dev))
                with dist.autocast():
                    part, logs = loss_fn(model, batch if width is None else batch.trim(width), step)
                dist.backward(part * factor if factor != 1.0 else part)
                loss = loss + part.detach().float() * factor
        dist.sync_gradients(params)
        loss = dist.mean_loss(loss)
        value = float(loss.detach())
        first = value if step == start and first is None else first
        check_divergence(value, first, step + 1, fp16=getattr(dist, "scaler", None) is not None)
        scaler = getattr(dist, "scaler", None)  # fp16: gradients are scaled until unscale_
        if scaler is not None:
            scaler.unscale_(opt)  # before clipping, so grad_clip is in true gradient units
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        if scaler is None:
            opt.step()
        else:
            scale = scaler.get_scale()
            scaler.step(opt)  # skips the update when a gradient is inf/nan
            scaler.update()  # ... and then lowers the scale
            state.skipped += scaler.get_scale() < scale
        sched.step()
        state.step, state.loss, state.logs = step + 1, value, logs
        bar.update(1)
        if bar.total is not None and bar.n >= bar.total and bar.total < cfg.steps:  # outlasted the estimate
            bar.total = min(cfg.steps, int(bar.total * 1.25) + 1)
            bar.refresh()
        if (cfg.eval_every and state.step % cfg.eval_every == 0) or state.step == cfg.steps:
            _eval(callbacks, state)
            if state.postfix:
                bar.set_postfix(state.postfix)
        _call(callbacks, "on_step", state)
    bar.close()
    model.eval()
    _call(callbacks, "on_end", state)
    return state
