"""Self-distillation: cross-entropy plus lambda x token-level KL to a frozen *format teacher*.

The teacher is the base model after one epoch of SFT on Known facts only: it has learned the QA
format and little new knowledge, so the KL term keeps the student's output distribution where
pre-existing knowledge put it while the CE term teaches the new facts (Kaplan et al. 2026).
``teacher="base"`` uses the base model itself. Paper defaults: temperature 0.5, lambda 1.

KL direction, named everywhere: ``forward`` = KL(teacher || student) (mode-covering, the default),
``reverse`` = KL(student || teacher). Note ``F.kl_div(input, target)`` computes KL(target || input);
we write the sums out instead so the direction is visible.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from interference.batching import Packed, answer_loss
from interference.io import config_hash
from interference.methods.base import Method, MethodConfig, MethodError, RunContext
from interference.models import load_state, model_logits, to_device

TEACHERS = ("format", "base")
DIRECTIONS = ("forward", "reverse")
POSITIONS = ("answer", "all")


def token_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
             temperature: float = 0.5, direction: str = "forward") -> torch.Tensor:
    """Mean over masked positions of the per-token KL between temperature-scaled distributions.

    logits [b, seq, vocab], mask [b, seq] bool. ``forward``: KL(teacher || student) =
    sum_v p_t (log p_t - log p_s); ``reverse``: KL(student || teacher). Unmasked positions
    contribute nothing; an all-False mask gives 0. No T^2 rescaling: lambda alone sets the weight.
    """
    if student_logits.shape != teacher_logits.shape:
        raise MethodError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                          f"{tuple(teacher_logits.shape)} differ in shape (different vocabularies?); "
                          "distil only between models sharing a tokenizer.")
    if direction not in DIRECTIONS:
        raise MethodError(f"unknown KL direction {direction!r}; use one of {list(DIRECTIONS)}.")
    if temperature <= 0:
        raise MethodError(f"temperature {temperature} must be positive.")
    log_s = (student_logits.float() / temperature).log_softmax(-1)
    log_t = (teacher_logits.float() / temperature).log_softmax(-1)
    if direction == "forward":  # KL(teacher || student)
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)
    else:  # KL(student || teacher)
        kl = (log_s.exp() * (log_s - log_t)).sum(-1)
    m = mask.float()
    return (kl * m).sum() / m.sum().clamp(min=1)


def kl_mask(batch: Packed, positions: str, pad_id: int) -> torch.Tensor:
    """Positions that get the KL term: answer-predicting ones, or every real (non-pad) token."""
    if positions == "answer":
        return batch.loss_mask
    real = batch.ids != pad_id
    nxt = torch.zeros_like(real)
    nxt[:, :-1] = real[:, 1:]  # position t predicts a real token t+1
    return real & nxt


def validate_teacher(teacher, student) -> None:
    if teacher is student:
        raise MethodError("the teacher is the student object itself; distil from a frozen copy.")
    tv, sv = int(teacher.cfg.d_vocab), int(student.cfg.d_vocab)
    if tv != sv:
        raise MethodError(f"the teacher's vocabulary ({tv} tokens) differs from the student's ({sv}); "
                          "use a teacher with the same tokenizer.")


@dataclass(frozen=True)
class SelfDistillConfig(MethodConfig):
    kl_weight: float = 1.0  # lambda; the paper's default
    temperature: float = 0.5  # the paper's default; sharpens the teacher towards its argmax
    direction: str = "forward"  # forward = KL(teacher || student)
    teacher: str = "format"  # "format": base + 1 epoch SFT on Known facts; "base": the base itself
    # Token-level KL on every real token ("all"), or on answer-predicting positions only.
    # "all" is the default: with one-token answers, "answer" puts the whole KL on the very token
    # being taught, and on the default world it learned 9% of the new facts (vs 100% for SFT).
    positions: str = "all"
    teacher_epochs: int = 1  # epochs of Known-only SFT that make the format teacher

    def __post_init__(self) -> None:
        if self.kl_weight < 0:
            raise MethodError(f"kl_weight {self.kl_weight} must be >= 0.")
        if self.temperature <= 0:
            raise MethodError(f"temperature {self.temperature} must be positive.")
        if self.direction not in DIRECTIONS:
            raise MethodError(f"unknown KL direction {self.direction!r}; use one of {list(DIRECTIONS)}.")
        if self.teacher not in TEACHERS:
            raise MethodError(f"unknown teacher {self.teacher!r}; use one of {list(TEACHERS)}.")
        if self.positions not in POSITIONS:
            raise MethodError(f"unknown KL positions {self.positions!r}; use one of {list(POSITIONS)}.")
        if self.teacher_epochs < 1:
            raise MethodError("teacher_epochs must be at least 1.")


def format_teacher(ctx: RunContext, epochs: int = 1):
    """Base + ``epochs`` of SFT on the Known (format) facts; cached next to the base model."""
    from interference.train import sft_steps  # the one loop; imported here to avoid a cycle

    cfg = ctx.config
    facts = ctx.data.format_facts
    key = {"facts": [f.fact_id for f in facts], "lr": cfg.lr, "batch": cfg.batch_size, "seed": cfg.seed,
           "epochs": epochs}
    teacher = copy.deepcopy(ctx.base_model)
    cache = (ctx.base_dir / "teachers" / f"format-{config_hash(key)}") if ctx.base_dir else None
    if cache is not None and (cache / "model.safetensors").exists():
        load_state(teacher, cache / "model.safetensors")
    else:
        for p in teacher.parameters():
            p.requires_grad_(True)
        sft_steps(teacher, ctx.tokenizer, facts, lr=cfg.lr, batch_size=cfg.batch_size, epochs=epochs, seed=cfg.seed)
        if cache is not None:
            from safetensors.torch import save_file
            from interference.io import atomic_save, atomic_write_json
            cache.mkdir(parents=True, exist_ok=True)
            state = {k: v.detach().contiguous().cpu() for k, v in teacher.state_dict().items()}
            atomic_save(cache / "model.safetensors", lambda tmp: save_file(state, tmp))
            atomic_write_json(cache / "teacher.json", key)
    return teacher


def frozen(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build_teacher(ctx: RunContext, kind: str, epochs: int = 1):
    if kind == "base":
        teacher = copy.deepcopy(ctx.base_model)
    else:
        teacher = format_teacher(ctx, epochs)
    teacher = frozen(to_device(teacher, ctx.device))
    validate_teacher(teacher, ctx.model)
    return teacher


class SelfDistill(Method):
    name = "self_distill"
    Config = SelfDistillConfig

    def setup(self, ctx: RunContext) -> None:
        self.teacher = build_teacher(ctx, self.config.teacher, self.config.teacher_epochs)
        self.pad_id = ctx.tokenizer.pad_token_id

    def use_teacher(self, teacher, student, pad_id: int) -> "SelfDistill":
        """Give the method a ready teacher instead of building one in ``setup`` (for callers
        with their own loop, such as the hypothesis runners)."""
        self.teacher = frozen(teacher)
        validate_teacher(self.teacher, student)
        self.pad_id = pad_id
        return self

    def kl_term(self, model, batch: Packed, logits: torch.Tensor) -> torch.Tensor:
        validate_teacher(self.teacher, model)
        with torch.no_grad():
            t_logits = model_logits(self.teacher, batch.ids)
        return token_kl(logits, t_logits, kl_mask(batch, self.config.positions, self.pad_id),
                        self.config.temperature, self.config.direction)

    def loss(self, model, batch, logits, ctx):
        ce = answer_loss(logits, batch)
        kl = self.kl_term(model, batch, logits)
        return ce + self.config.kl_weight * kl, {"ce": float(ce.detach()), "kl": float(kl.detach())}
