"""Typed configs of the figures, read from ``interference/figures/configs/<name>.json``.

A config file holds the default-world settings at the top level and the ``--quick`` overrides
under ``"quick"``, so one file says both what the paper-sized figure uses and what the smoke run
uses. Unknown keys are refused (a typo must not silently fall back to a default).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from interference.figures.runs import Arm, RunSettings
from interference.io import check_fields

# Package data (importlib.resources), so an installed wheel finds the configs as a checkout does.
CONFIG_DIR = resources.files("interference.figures") / "configs"


def _root() -> Path:
    """Where relative run caches live: the checkout when the package sits in one (notebooks run in
    notebooks/, the CLI at the root, and both must find the same runs), else the working directory
    (an installed package has no checkout to point into)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() and (here / "interference").is_dir() else Path.cwd()


REPO = _root()


class FigureConfigError(ValueError):
    """A figure config file we cannot use."""


@dataclass(frozen=True)
class FigureConfig:
    """Base: JSON round-trip with ``arms`` and ``run`` turned into their dataclasses."""

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "FigureConfig":
        d = dict(check_fields(cls, d, FigureConfigError, f"{cls.__name__} key"))
        if "arms" in d:
            d["arms"] = tuple(a if isinstance(a, Arm) else Arm.from_dict(a) for a in d["arms"])
        if "run" in d and not isinstance(d["run"], RunSettings):
            d["run"] = RunSettings.from_dict(d["run"])
        for k, v in d.items():
            if isinstance(v, list):
                d[k] = tuple(v)
        return cls(**d)


def _check_arms(cfg, n_seeds: int | None = None) -> None:
    labels = [a.label for a in cfg.arms]
    if not labels:
        raise FigureConfigError(f"{type(cfg).__name__} lists no arms; give at least one {{label, method, ...}}.")
    if len(set(labels)) != len(labels):
        raise FigureConfigError(f"arm labels {labels} repeat; each arm needs its own label.")
    if n_seeds is not None and n_seeds < 1:
        raise FigureConfigError(f"seeds={n_seeds} leaves nothing to run; use 1 or more (3 for intervals).")


@dataclass(frozen=True)
class ArmsConfig(FigureConfig):
    """Arms x seeds of fine-tuning runs (curves, trade-off, hallucination, freezing, attribution)."""
    arms: tuple = ()
    seeds: int = 3
    run: RunSettings = field(default_factory=RunSettings)
    n_facts: int | None = None  # held-out facts re-scored per model (attribution); None = all

    def __post_init__(self) -> None:
        _check_arms(self, self.seeds)


@dataclass(frozen=True)
class ParamSpaceConfig(FigureConfig):
    arms: tuple = ()  # exactly two: the plane is base + span(end of arm 0, end of arm 1)
    seed: int = 0
    run: RunSettings = field(default_factory=RunSettings)
    grid: int = 17  # points per axis; each point is one scoring pass of the three sets
    margin: float = 0.25  # grid extends this share of the end points' span beyond them
    n_facts: int = 300  # held-out known facts scored per grid point (a sample: speed)
    threshold: float = 0.9  # a region is where accuracy >= threshold x its best value on the grid

    def __post_init__(self) -> None:
        _check_arms(self)
        if len(self.arms) != 2:
            raise FigureConfigError(f"param_space needs exactly two arms (the plane's end points), got {len(self.arms)}.")
        if self.grid < 3:
            raise FigureConfigError(f"grid={self.grid} is too coarse to draw regions; use 3 or more points per axis.")


@dataclass(frozen=True)
class LocalizedFigureConfig(FigureConfig):
    arms: tuple = ()  # drift curves per arm; the first arm also gives overlap vs forgetting
    seeds: int = 3
    run: RunSettings = field(default_factory=RunSettings)
    layer: int | None = None  # residual stream layer read; None = the middle layer
    bins: int = 5  # overlap quantile bins
    hypotheses_dir: str = "runs/hypotheses"

    def __post_init__(self) -> None:
        _check_arms(self, self.seeds)


@dataclass(frozen=True)
class ResultsConfig(FigureConfig):
    """Figures drawn from another command's saved results (hypotheses, forecast)."""
    hypotheses_dir: str = "runs/hypotheses"
    forecast_dir: str = "analyses/results/forecast"
    hypotheses: tuple = ("capacity", "behavior_cloning", "localized")
    decomposition_dir: str = "runs/decomposition"  # run_hypothesis decomposition --out


def load_config(cls: type[FigureConfig], name: str, quick: bool, config_dir: str | Path | None = None) -> FigureConfig:
    """The config of figure ``name`` (its JSON file, with the quick overrides when ``quick``)."""
    path = (Path(config_dir) if config_dir else CONFIG_DIR) / f"{name}.json"
    if not path.is_file():
        raise FigureConfigError(f"no config {path} for figure {name!r}; restore it from git or pass --configs DIR.")
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FigureConfigError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); fix it.") from None
    quick_part = raw.pop("quick", {})
    raw.pop("about", None)  # a free-text note for readers of the JSON
    merged = {**raw, **(quick_part if quick else {})}
    try:
        return cls.from_dict(merged)
    except (TypeError, ValueError) as e:
        raise FigureConfigError(f"{path}: {e}") from None
