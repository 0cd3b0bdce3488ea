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

from dataclasses import dataclass

import torch

from interference.batching import Packed, answer_loss
from interference.methods.base import Method, MethodConfig, MethodError, RunContext
from interference.models import model_logits

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
    kl_weight: float = 1.0  # lambda, the weight of the KL term next to CE (the paper's default)
    temperature: float = 0.5  # softmax temperature of both sides of the KL (the paper's default); sharpens the teacher towards its argmax
    direction: str = "forward"  # forward = KL(teacher || student), reverse = KL(student || teacher)
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


def teacher_of(ctx: RunContext, kind: str):
    """The frozen teacher a run hands over: the format teacher stage, or the base itself."""
    teacher = ctx.base_model if kind == "base" else ctx.teacher
    if teacher is None:
        raise MethodError("self-distillation with teacher='format' needs the format teacher, which the caller "
                          "builds (interference.teacher.provide_stages); none was given.")
    validate_teacher(teacher, ctx.model)
    return teacher  # used under no_grad only; left untouched (it may be a shared base)


class SelfDistill(Method):
    name = "self_distill"
    Config = SelfDistillConfig

    def stages(self) -> dict[str, int]:
        return {"teacher": self.config.teacher_epochs} if self.config.teacher == "format" else {}

    def setup(self, ctx: RunContext) -> None:
        self.teacher = teacher_of(ctx, self.config.teacher)
        self.pad_id = ctx.tokenizer.pad_token_id

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
