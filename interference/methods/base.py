"""What a fine-tuning method is: a typed config plus a loss (and which parameters train).

Why this shape (TRL's "a method is a config plus a loss"): the training loop
(``interference.loop``) is the same for every method and every caller (``train.finetune`` and the
hypothesis grids' ``finetune_on``), so methods differ only in

- ``stages()``: models trained *for* the method before it starts, by name and size
  (``{"teacher": epochs}`` for the format teacher, ``{"probe": steps}`` for a short SFT probe);
  ``interference.teacher`` builds them and puts them on ``ctx``, so no method trains a model;
- ``prepare(model, ctx)``: optional model surgery before training (LoRA adapters); returns the model;
- ``setup(ctx)``: one-off state built from the base model (teacher, anchor weights, Fisher);
  must be deterministic so a resumed run rebuilds exactly the same state;
- ``trainable_parameters(model)``: the (name, parameter) pairs the optimizer sees; everything
  else gets ``requires_grad=False`` and stays bit-identical;
- ``loss(model, batch, logits, ctx) -> (loss, logs)``: the scalar to minimise for one batch.

A method never owns a loop, an optimizer, a device choice or a file, and never trains a model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from interference.io import check_fields
from interference.batching import Packed, answer_loss


class MethodError(ValueError):
    """A method name, option or setup that cannot work."""


@dataclass
class RunContext:
    """Everything methods and callbacks may look at during a fine-tuning run.

    Callbacks (``on_start(ctx)``, ``on_eval(ctx, step)``, ``on_end(ctx)``) get the same object.
    ``model`` is the model being trained, ``base_model`` a frozen copy of the base before any
    update, ``step`` the number of optimizer updates done so far.
    """
    model: Any
    base_model: Any
    tokenizer: Any
    world: Any
    data: Any  # interference.sft_data.SFTData
    out: Path | None
    config: Any = None  # interference.train.FinetuneConfig, or train.SFTSpec
    base_dir: Path | None = None  # the cached pre-training run (for teacher caches, statements)
    device: torch.device = torch.device("cpu")
    step: int = 0
    last_eval: dict = field(default_factory=dict)  # set name -> accuracy at the latest evaluation
    last_loss: float | None = None  # the training loss at the latest evaluation (None at step 0)
    timeline: list = field(default_factory=list)  # rows of the latest evaluation (see CONTRACTS.md)
    teacher: Any = None  # the frozen format teacher, when the method's stages() ask for one
    probe: Any = None  # a copy of the base after a few plain SFT steps, when asked for

    @property
    def n_ctx(self) -> int:
        return int(self.model.cfg.n_ctx)


@dataclass(frozen=True)
class MethodConfig:
    """Base class for method configs: JSON round-trip and validation hooks."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MethodConfig":
        return cls(**check_fields(cls, d, MethodError, "method", noun="option"))


class Method:
    """Plain SFT behaviour; subclasses override what differs."""

    name: ClassVar[str] = "base"
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, config: MethodConfig | None = None, **options) -> None:
        if config is not None and options:
            raise MethodError("pass either a config object or options, not both.")
        self.config = config if config is not None else self.Config.from_dict(options)

    def stages(self) -> dict[str, int]:
        """Models to build before training: {"teacher": epochs} and/or {"probe": SFT steps}."""
        return {}

    def prepare(self, model, ctx: RunContext):
        return model

    def setup(self, ctx: RunContext) -> None:
        pass

    def trainable_parameters(self, model) -> list[tuple[str, torch.nn.Parameter]]:
        return list(model.named_parameters())

    def loss(self, model, batch: Packed, logits: torch.Tensor, ctx: RunContext) -> tuple[torch.Tensor, dict]:
        ce = answer_loss(logits, batch)
        return ce, {"ce": float(ce.detach())}

    def finalize(self, model):
        """The plain model to save after training (LoRA merges its adapters here)."""
        return model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def param_snapshot(params: list[tuple[str, torch.nn.Parameter]]) -> dict[str, torch.Tensor]:
    """Detached copies of the given parameters (anchors for L2 / EWC)."""
    return {n: p.detach().clone() for n, p in params}


def weighted_sq_distance(params: list[tuple[str, torch.nn.Parameter]], anchor: dict[str, torch.Tensor],
                         weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """sum_i w_i (theta_i - anchor_i)^2 over ``params``; the shared core of l2_init and ewc."""
    total = None
    for n, p in params:
        d = (p - anchor[n]) ** 2
        term = (d * weights[n]).sum() if weights is not None else d.sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())
