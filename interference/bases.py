"""The base store: what a base model *is* (``BaseSpec``: world + model + pre-training configs),
where it lives (``base_dir``: the cache entry named by the spec's hash), and what a finished base
holds (its SliCK table, its weights fingerprint).

Why a module apart from ``pretrain``: methods, hypotheses, the forecast and the figures all need
to find a base and read its SliCK table, and none of them should import the training recipe to do
so. ``pretrain.base_model`` is the one place that finds *or trains* a base; everything here only
names and reads.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from interference.io import atomic_write_json, check_finite, config_hash
from interference.models import ModelConfig, ModelError, weights_fingerprint
from interference.world import WorldConfig


@dataclass(frozen=True)
class PretrainConfig:
    # Fixed run length, used only when ``consolidation`` is None (the old recipe: 3000 steps).
    steps: int = 3000
    # Steps trained after memorisation, as a multiple of the memorisation step m. With the peak
    # rate held until memorisation, the default d128 base reads statement accuracy 0.93 / 0.963 /
    # 0.965 at steps 1000 / 1250 / 1500: the last percents come slowly at a constant rate, so the
    # criterion is 0.97 (not 0.99, which would mostly measure that slow tail), checked at each
    # evaluation, and 1 x m steps of cosine decay follow (the old fixed recipe reached known QA
    # 0.97 with about as many decaying steps). Levels 0.5 / 1 / 2 are the consolidation axis.
    consolidation: float | None = 1.0
    memorised_at: float = 0.97  # statement accuracy (on a 512-statement probe) that counts as memorised
    check_every: int = 250  # steps between memorisation checks (= eval_every: the history rows are the checks)
    memorise_cap: int = 20_000  # m = cap when the statements are never memorised (reported as such)
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 200
    min_lr_ratio: float = 0.1  # cosine decays to 10% of lr
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    qa_weight: int = 1  # copies of each QA example per epoch (QA:statement balance)
    eval_every: int = 250
    ckpt_every: int = 500
    seed: int = 0
    slick_samples: int = 20  # the paper's number of temperature samples
    slick_temperature: float = 0.5
    # Version of the training loop (interference.loop) that made the base. Part of the cache hash,
    # so bases of the first loop (which dropped each epoch's last partial batch) are never reused
    # as if this loop had trained them. Configs written before the field existed read as 1.
    loop: int = 2

    def __post_init__(self) -> None:
        check_finite(self.to_dict(), ValueError, "pre-training setting")
        counts = ("steps", "batch_size", "eval_every", "ckpt_every", "qa_weight", "slick_samples")
        bad = [k for k in counts if not isinstance(getattr(self, k), int) or getattr(self, k) < 1]
        if bad or self.lr <= 0 or self.warmup < 0 or self.slick_temperature <= 0:
            raise ValueError(f"pre-training setting(s) {bad or ['lr/warmup/slick_temperature']} must be positive "
                             f"(steps={self.steps}, lr={self.lr}); an untrained base is no base.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "PretrainConfig":
        return cls(steps=600, batch_size=64, warmup=50, eval_every=100, ckpt_every=200, slick_samples=5,
                   consolidation=1.0, check_every=100)

    def phase1_dict(self) -> dict:
        """The fields that decide the run up to memorisation (its cache key): not the length."""
        return {k: v for k, v in self.to_dict().items() if k not in ("steps", "consolidation", "ckpt_every",
                                                                    "slick_samples", "slick_temperature")}


@dataclass(frozen=True)
class BaseSpec:
    """Everything that decides a base model; its hash names the cache entry."""
    world: WorldConfig
    model: ModelConfig
    pretrain: PretrainConfig

    def to_dict(self) -> dict:
        return {"world": self.world.to_dict(), "model": self.model.to_dict(), "pretrain": self.pretrain.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "BaseSpec":
        return cls(WorldConfig.from_dict(d["world"]), ModelConfig.from_dict(d["model"]),
                   PretrainConfig(**{"loop": 1, **d["pretrain"]}))

    def phase1_hash(self) -> str:
        """Names the cached memorised state that bases differing only in consolidation share."""
        return config_hash({"world": self.world.to_dict(), "model": self.model.to_dict(),
                            "pretrain": self.pretrain.phase1_dict()})

    def with_consolidation(self, consolidation: float | None) -> "BaseSpec":
        return dataclasses.replace(self, pretrain=dataclasses.replace(self.pretrain, consolidation=consolidation))

    @classmethod
    def default(cls, quick: bool = False) -> "BaseSpec":
        if quick:
            return cls(WorldConfig.quick(), ModelConfig.quick(), PretrainConfig.quick())
        return cls(WorldConfig(), ModelConfig(), PretrainConfig())

    def hash(self) -> str:
        return config_hash(self.to_dict())


SLICK_FILE = "slick.jsonl"  # one row per fact: fact_id, split, SliCK category, p_greedy, p_sample
# What fine-tuning needs from a base directory, and all that a finished pre-training run holds
# (checksummed in checksums.json when it finishes).
BASE_FILES = ("config.json", SLICK_FILE, "model.safetensors", "model_config.json", "tokenizer")
RUN_FILES = BASE_FILES + ("metrics.json",)


def load_slick(run_dir: str | Path) -> dict[str, dict]:
    """fact_id -> SliCK row of a finished pre-training run."""
    path = Path(run_dir) / SLICK_FILE
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        return {r["fact_id"]: r for r in rows}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{run_dir} is not a finished pre-training run ({SLICK_FILE} is missing or unreadable: "
                         f"{type(e).__name__}); pass a directory written by `python -m interference.pretrain`.") from None


FINGERPRINT_FILE = "fingerprint.json"  # {"weights": sha256[:16] of the saved state}: what the cache holds


def write_fingerprint(run_dir: str | Path, model) -> str:
    fp = weights_fingerprint(model.state_dict())
    atomic_write_json(Path(run_dir) / FINGERPRINT_FILE, {"weights": fp})
    return fp


def base_fingerprint(run_dir: str | Path) -> str:
    """The weights fingerprint of a finished pre-training run. A config hash names what a base was
    *asked* to be; thread counts and machines change what it *is* (three default bases once shared
    one hash), so teachers and hypothesis cells are keyed by this instead. Bases saved before
    fingerprints existed get theirs computed from model.safetensors and recorded now."""
    run_dir = Path(run_dir)
    f = run_dir / FINGERPRINT_FILE
    if f.exists():
        return json.loads(f.read_text())["weights"]
    from safetensors.torch import load_file
    try:
        fp = weights_fingerprint(load_file(str(run_dir / "model.safetensors")))
    except Exception:
        raise ModelError(f"{run_dir} holds no readable model.safetensors to fingerprint; pre-train it again.") from None
    atomic_write_json(f, {"weights": fp})
    return fp


def cache_root() -> Path:
    return Path(os.environ.get("INTERFERENCE_CACHE", Path.cwd() / ".cache" / "interference"))


def base_dir(spec: "BaseSpec") -> Path:
    """The cache entry of the base ``spec`` names: ``<cache root>/base-<spec hash>``. The one
    spelling of that path; a base outside the cache is passed as a directory instead."""
    return cache_root() / f"base-{spec.hash()}"

