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
import sys
from dataclasses import dataclass
from pathlib import Path

from interference.evaluate import SLICK_CATEGORIES
from interference.io import CHECKSUMS, atomic_write_json, check_finite, config_hash, sha256_file
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
        table = {r["fact_id"]: r for r in rows}
        bad = next((i for i, r in table.items() if r.get("category") not in SLICK_CATEGORIES), None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(f"{run_dir} is not a finished pre-training run ({SLICK_FILE} is missing or unreadable: "
                         f"{type(e).__name__}); pass a directory written by `python -m interference.pretrain`.") from None
    if bad is not None:
        raise ModelError(f"{path} gives fact {bad} no SliCK category (one of {', '.join(SLICK_CATEGORIES)}); "
                         "pre-train that base again.")
    return table


def base_world(run_dir: str | Path) -> WorldConfig:
    """The world config a pre-training run directory was made for; one sentence when its
    ``config.json`` is unreadable or names no world."""
    f = Path(run_dir) / "config.json"
    try:
        cfg = json.loads(f.read_bytes().decode("utf-8"))
        world = cfg["world"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(f"{f} is unreadable or names no world; pass a directory written by "
                         "`python -m interference.pretrain`.") from None
    return WorldConfig.from_dict(world)


FINGERPRINT_FILE = "fingerprint.json"  # {"weights": sha256[:16] of the saved state}: what the cache holds


def write_fingerprint(run_dir: str | Path, model) -> str:
    fp = weights_fingerprint(model.state_dict())
    atomic_write_json(Path(run_dir) / FINGERPRINT_FILE, {"weights": fp})
    return fp


def base_fingerprint(run_dir: str | Path) -> str:
    """The weights fingerprint of a finished pre-training run. A config hash names what a base was
    *asked* to be; thread counts and machines change what it *is* (three default bases once shared
    one hash), so teachers and hypothesis cells are keyed by this instead.

    ``fingerprint.json`` is trusted only inside the run's seal (``checksums.json`` lists it and it
    matches); otherwise (a base saved before fingerprints were sealed, an edited or unreadable file)
    it is computed from ``model.safetensors`` (itself sealed) and recorded, with a note when the
    file said something else. A directory without weights (a real model's SliCK cache entry, whose
    fingerprint ``real_data.cached_slick`` keeps) is read as it is."""
    run_dir = Path(run_dir)
    f = run_dir / FINGERPRINT_FILE
    stored = _stored_fingerprint(f)
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        if stored is None:
            raise ModelError(f"{run_dir} holds no readable model.safetensors to fingerprint; pre-train it again.")
        return stored
    try:
        sums = json.loads((run_dir / CHECKSUMS).read_bytes().decode("utf-8"))
        sealed = isinstance(sums, dict) and sums.get(FINGERPRINT_FILE) == sha256_file(f)
    except (OSError, ValueError):
        sealed = False
    if stored is not None and sealed:
        return stored
    from safetensors.torch import load_file
    try:
        fp = weights_fingerprint(load_file(str(weights)))
    except Exception:
        raise ModelError(f"{run_dir} holds no readable model.safetensors to fingerprint; pre-train it again.") from None
    if stored is not None and stored != fp:
        print(f"note: {f} says weights {stored}, but {weights} has weights {fp}; using {fp}.", file=sys.stderr)
    if stored != fp:
        atomic_write_json(f, {"weights": fp})
    return fp


def _stored_fingerprint(f: Path) -> str | None:
    """The ``weights`` of a fingerprint file, or None when it is missing or not one of ours."""
    try:
        d = json.loads(f.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    w = d.get("weights") if isinstance(d, dict) else None
    return w if isinstance(w, str) and w else None


def cache_root() -> Path:
    """``$INTERFERENCE_CACHE``, or ``.cache/interference`` under the current directory when it is
    unset. Set but empty is refused: it would put the cache in the current directory."""
    env = os.environ.get("INTERFERENCE_CACHE")
    if env is None:
        return Path.cwd() / ".cache" / "interference"
    if not env.strip():
        raise ValueError("INTERFERENCE_CACHE is set but empty, which would put the cache in the current directory; "
                         "unset it or name a directory.")
    return Path(env)


def base_dir(spec: "BaseSpec") -> Path:
    """The cache entry of the base ``spec`` names: ``<cache root>/base-<spec hash>``. The one
    spelling of that path; a base outside the cache is passed as a directory instead."""
    return cache_root() / f"base-{spec.hash()}"
