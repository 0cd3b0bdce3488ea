"""The format teacher as a stage of its own: built once from a base, cached beside it, handed to
the methods that need it.

Self-distillation pulls the student towards a *format teacher*: the base after one epoch of SFT
on Known facts only, which has learned the QA format and little new knowledge (Kaplan et al.
2026). L2-to-init's KL-matched weight needs that teacher too, plus a short plain-SFT *probe* (at
the base weights the L2 gradient is zero, so it is measured at a slightly moved copy). Both are
trained here, through the one loop (``interference.loop``); methods only receive them
(``RunContext.teacher`` / ``.probe``), so no method trains a model and ``methods`` never imports
a training module.

Cache: ``<base dir>/teachers/format-<hash>/`` with ``model.safetensors`` and ``teacher.json``,
the hash taken over the base's *weights fingerprint*, the recipe and the fact ids, so a teacher
is reused exactly when it would be rebuilt identically and never across different base weights.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from interference.batching import pack
from interference.data import Fact
from interference.io import atomic_save, config_hash, read_checked_json, sha256_file, write_checked_json
from interference.loop import LoopConfig, steps_for_epochs, train_loop
from interference.methods.base import MethodError
from interference.models import clone_model, load_state

TEACHER_DIR = "teachers"


@dataclass(frozen=True)
class TeacherRecipe:
    """How the format teacher is trained: ``epochs`` of SFT through the one loop."""
    epochs: int = 1  # one epoch: enough to learn the format, too little to learn many facts
    lr: float = 3e-4  # the fine-tuning default, so the teacher moves as far as one epoch of the student
    batch_size: int = 32
    seed: int = 0
    warmup_frac: float = 0.05
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("the format teacher needs at least one epoch.")

    def loop_config(self, n_facts: int) -> LoopConfig:
        return LoopConfig.from_settings(self, steps=steps_for_epochs(n_facts, self.batch_size, self.epochs))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def frozen(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def sft_copy(base, tokenizer, facts: Sequence[Fact], cfg: LoopConfig):
    """A copy of ``base`` after plain SFT (answer cross-entropy, every parameter) on ``facts``."""
    model = clone_model(base)
    for p in model.parameters():
        p.requires_grad_(True)
    dev = next(model.parameters()).device
    data = pack(tokenizer, [(f.prompt, f.answer) for f in facts], int(model.cfg.n_ctx)).to(dev)
    train_loop(model, model.parameters(), data, cfg)
    return model


def teacher_key(fingerprint: str, recipe: TeacherRecipe, facts: Sequence[Fact]) -> dict:
    return {"base_fingerprint": fingerprint, "recipe": recipe.to_dict(), "facts": [f.fact_id for f in facts]}


def format_teacher(base, tokenizer, facts: Sequence[Fact], recipe: TeacherRecipe = TeacherRecipe(),
                   base_dir: str | Path | None = None, fingerprint: str | None = None):
    """The frozen format teacher of ``base``: loaded from the cache beside the base when one was
    built from the same weights, recipe and facts, else trained (and cached when ``base_dir`` and
    ``fingerprint`` are given)."""
    if not facts:
        raise ValueError("the format teacher needs Known facts to train on; none were given.")
    key = teacher_key(fingerprint, recipe, facts) if fingerprint else None
    cache = Path(base_dir) / TEACHER_DIR / f"format-{config_hash(key)}" if key and base_dir else None
    if cache is not None and (cache / "model.safetensors").exists() and (cache / "teacher.json").exists():
        why = _check_entry(cache, key)
        if not why:
            teacher = clone_model(base)
            load_state(teacher, cache / "model.safetensors")
            return frozen(teacher)
        print(f"note: the cached format teacher in {cache} {why}; training it again.", file=sys.stderr)
    teacher = sft_copy(base, tokenizer, facts, recipe.loop_config(len(facts)))
    if cache is not None:
        from safetensors.torch import save_file
        cache.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in teacher.state_dict().items()}
        atomic_save(cache / "model.safetensors", lambda tmp: save_file(state, tmp))
        # written last: the commit point of the entry, sealing the weights by their sha256
        write_checked_json(cache / "teacher.json", {**key, "weights_sha256": sha256_file(cache / "model.safetensors")})
    return frozen(teacher)


def _check_entry(cache: Path, key: dict) -> str:
    """'' if ``cache`` holds the teacher of ``key`` with the weights its seal names, else why not.
    An entry written before teachers were sealed (no ``weights_sha256``) cannot be trusted: a
    valid safetensors file swapped in would be used as the teacher."""
    meta, why = read_checked_json(cache / "teacher.json", legacy_ok=False)
    if meta is None:
        return f"cannot be trusted (teacher.json: {why})"
    want = meta.pop("weights_sha256", None)
    if meta != json.loads(json.dumps(key)):
        return "was built for other base weights, recipe or facts"
    if want != sha256_file(cache / "model.safetensors"):
        return "has weights that do not match its checksum"
    return ""


def provide_stages(method, ctx, *, format_facts: Sequence[Fact] = (), recipe: TeacherRecipe = TeacherRecipe(),
                   base_dir: str | Path | None = None, fingerprint: str | None = None, teacher=None) -> None:
    """Build what ``method.stages()`` asks for and put it on ``ctx`` (``teacher``, ``probe``).

    ``teacher``: a ready format teacher (the hypothesis grids build one per base and share it);
    otherwise it is built from ``ctx.base_model`` on ``format_facts``. The probe is ``n`` steps of
    plain SFT on ``ctx.data.train`` with the recipe's lr, batch size and seed.
    """
    need = method.stages()
    if "teacher" in need:
        if teacher is None:
            if not format_facts:
                raise MethodError(f"method {method.name!r} needs the format teacher, but no teacher and no Known "
                                  "facts to build one were given; pass teacher= (interference.teacher.format_teacher).")
            teacher = format_teacher(ctx.base_model, ctx.tokenizer, format_facts,
                                     dataclasses.replace(recipe, epochs=need["teacher"]), base_dir, fingerprint)
        ctx.teacher = frozen(teacher)
    if "probe" in need:
        cfg = LoopConfig.from_settings(recipe, steps=need["probe"])
        ctx.probe = sft_copy(ctx.base_model, ctx.tokenizer, ctx.data.train, cfg).eval()
