"""The fine-tuning runs behind the figures: named arms, trained once, found again by config.

Every run is found or trained by the run store (``interference.runs.RunStore``: one directory per
``FinetuneConfig``, named ``<method>-s<seed>-<hash>``): a finished run with the same config is
returned as it is (never retrained), a changed setting gets a new directory, and two figures that
need the same run (the SFT runs serve six figures) share it, as do the forecast's evaluation and
the analyses when they ask for the same config.

Runs trained here carry two extra records, so that any later figure can use any run:
- probe snapshots (``ProbeCallback``: residual stream of the held-out and new facts at the
  subject's last token and the answer position, ~8 times per run) for drift and overlap;
- parameter snapshots (``ParamPathCallback``: the update theta_t - theta_0 as float16, ~8 times
  per run) for the parameter-space picture.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interference.io import atomic_save, atomic_write_json, check_fields
from interference.runs import RunStore
from interference.workers import run_in_workers

SNAPSHOTS = 8  # probe / parameter snapshots per run: enough points for a curve, little disk
PATH_DIR = "param_path"


class MissingInput(RuntimeError):
    """A figure's input is not there; the message names the command that produces it."""


@dataclass(frozen=True)
class Arm:
    """One fine-tuning recipe: a method with options at an Unknown fraction of the SFT set."""
    label: str  # the legend entry
    method: str = "sft"
    options: dict = field(default_factory=dict)
    unknown_fraction: float = 0.5
    strength: float | None = None  # the x of a strength sweep (kl_weight, weight, ratio), for labels

    @classmethod
    def from_dict(cls, d: dict) -> "Arm":
        return cls(**check_fields(cls, d, ValueError, "arm"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunSettings:
    """How long every run of a figure trains; ``None`` keeps FinetuneConfig's (or .quick()'s) value."""
    epochs: int | None = None
    eval_every: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "RunSettings":
        return cls(**check_fields(cls, d, ValueError, "run settings"))


def finetune_config(arm: Arm, seed: int, quick: bool, settings: RunSettings = RunSettings()):
    """The FinetuneConfig of (arm, seed): the seed draws the SFT facts and the data order."""
    from interference.train import FinetuneConfig
    base = FinetuneConfig.quick() if quick else FinetuneConfig()
    kw = {"data": dataclasses.replace(base.data, unknown_fraction=arm.unknown_fraction, seed=seed),
          "method": arm.method, "method_options": dict(arm.options), "seed": seed}
    kw.update({k: v for k, v in dataclasses.asdict(settings).items() if v is not None})
    return dataclasses.replace(base, **kw)


def _every(cfg) -> int:
    """Snapshot spacing: a multiple of eval_every giving about SNAPSHOTS snapshots."""
    per_epoch = math.ceil(cfg.data.n_facts / cfg.batch_size)
    total = cfg.steps or cfg.epochs * per_epoch
    return max(1, math.ceil(total / SNAPSHOTS / cfg.eval_every)) * cfg.eval_every


class ParamPathCallback:
    """Saves the update theta_t - theta_0 (all parameters, flattened in ``named_parameters``
    order, float16) every ``every`` steps and at the end, into ``<run>/param_path/``.

    float16 keeps 3 significant digits of each update, plenty for a 2-D projection; a run of the
    default model costs ~1.8 MB per snapshot. Methods that rename parameters (LoRA) are skipped.
    """

    def __init__(self, every: int):
        self.every = every

    def on_start(self, ctx) -> None:
        base = dict(ctx.base_model.named_parameters())
        names = [n for n, _ in ctx.model.named_parameters()]
        self.ok = ctx.out is not None and names == list(base) and bool(names)
        if not self.ok:
            return
        self.names = names
        self.base = torch.cat([base[n].detach().flatten().float().cpu() for n in names])
        self.dir = Path(ctx.out) / PATH_DIR
        self.steps: list[int] = []
        self._save(ctx, int(ctx.step))

    def on_eval(self, ctx, step: int) -> None:
        if getattr(self, "ok", False) and step % self.every == 0 and step not in self.steps:
            self._save(ctx, step)

    def on_end(self, ctx) -> None:
        if getattr(self, "ok", False) and int(ctx.step) not in self.steps:
            self._save(ctx, int(ctx.step))

    def _save(self, ctx, step: int) -> None:
        from safetensors.torch import save_file
        vec = torch.cat([p.detach().flatten().float().cpu() for _, p in ctx.model.named_parameters()])
        delta = (vec - self.base).half().contiguous()
        atomic_save(self.dir / f"step_{step:07d}.safetensors", lambda tmp: save_file({"delta": delta}, tmp))
        self.steps = sorted(set(self.steps) | {step})
        atomic_write_json(self.dir / "index.json", {"steps": self.steps, "n_params": int(vec.numel())})


def load_param_path(run_dir: str | Path) -> tuple[list[int], torch.Tensor]:
    """(steps, [n_steps, n_params] float32 updates theta_t - theta_0) of a run."""
    from safetensors.torch import load_file
    d = Path(run_dir) / PATH_DIR
    if not (d / "index.json").exists():
        raise MissingInput(f"{run_dir} holds no parameter snapshots; re-run it through interference.figures.")
    steps = json.loads((d / "index.json").read_text())["steps"]
    return steps, torch.stack([load_file(str(d / f"step_{s:07d}.safetensors"))["delta"].float() for s in steps])


class RunCache:
    """Finds or trains the run of (arm, seed) under ``root``; see the module docstring."""

    def __init__(self, root: str | Path, quick: bool, progress: bool = False, device: str | None = None):
        self.root, self.quick, self.progress, self.device = Path(root), quick, progress, device
        self.store = RunStore(self.root, progress=progress, device=device)
        self.trained = 0
        self.reused = 0
        self.status = None  # optional callable(str): told which run is being trained (a progress bar's postfix)

    def run_dir(self, arm: Arm, seed: int, settings: RunSettings = RunSettings()) -> Path:
        # named by the config (the store's one scheme), not by label: two figures asking for the
        # same config under different labels (``sft`` and ``all (SFT)``) share one run
        return self.store.path(finetune_config(arm, seed, self.quick, settings))

    def is_cached(self, arm: Arm, seed: int, settings: RunSettings = RunSettings()) -> bool:
        return (self.run_dir(arm, seed, settings) / "metrics.json").exists()

    def get(self, arm: Arm, seed: int, settings: RunSettings = RunSettings()):
        """The RunRecord of (arm, seed), trained now only if no finished run of its config exists."""
        from interference.probes import ProbeCallback
        cfg = finetune_config(arm, seed, self.quick, settings)
        every = _every(cfg)
        trained = self.store.trained
        rec = self.store.get(cfg, callbacks=[ProbeCallback(("stability", "plasticity"), every=every),
                                             ParamPathCallback(every)], status=self.status)
        if self.store.trained > trained:
            self.trained += 1
        else:
            self.reused += 1
        return rec

    def seeds(self, arm: Arm, n_seeds: int, settings: RunSettings = RunSettings()) -> list:
        return [self.get(arm, s, settings) for s in range(n_seeds)]


# ------------------------------------------------------------------ training missing runs in parallel
def _train_one(job: tuple) -> str:
    """Worker: train one missing run (a separate process, one intra-op thread)."""
    torch.set_num_threads(1)
    root, quick, device, arm, seed, settings = job
    RunCache(root, quick, device=device).get(Arm.from_dict(arm), seed, RunSettings.from_dict(settings))
    return f"{arm['method']}-s{seed}"


def _train_part(part: list) -> None:
    for job in part:
        _train_one(job)


def train_missing(runs, cache: "RunCache", jobs: int, progress: bool = False) -> None:
    """Train every (arm, seed, settings) of ``runs`` that ``cache`` lacks, ``jobs`` at a time. Runs
    are independent single-threaded processes, so on 2 cores two take about the time of one.
    (Workers are forked by ``interference.workers.run_in_workers``, the package's one pool.)"""
    from tqdm.auto import tqdm

    todo = {}
    for arm, seed, settings in runs:
        d = cache.run_dir(arm, seed, settings)
        if not (d / "metrics.json").exists():
            todo[d] = (str(cache.root), cache.quick, cache.device, arm.to_dict(), seed, dataclasses.asdict(settings))
    if not todo:
        return
    # Runs share cached stages (the base; self-distillation's format teacher): one run per method
    # goes first, in this process, so parallel workers never build the same stage side by side.
    first = {}
    for d, job in todo.items():
        first.setdefault((job[3]["method"], job[3]["unknown_fraction"]), d)
    bar = tqdm(total=len(todo), desc="runs", disable=not progress, dynamic_ncols=True)
    for d in first.values():
        _train_one(todo.pop(d))
        bar.update(1)
        cache.trained += 1
    rest = list(todo.values())
    run_in_workers(rest, _train_part, jobs)  # each worker writes its run directories; the parent counts them
    bar.update(len(rest))
    cache.trained += len(rest)
    bar.close()
