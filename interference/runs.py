"""The run store: find a fine-tuning run directory by its config, or train it there.

Why one store: a run directory is named by what trained it, so the same config asked for by two
figures, the forecast's evaluation and an analysis is one directory, trained once. Before this
module there were four naming schemes (``<method>-s<seed>-<hash>``, ``<method>-seed<seed>``,
``<label>-f<fraction>-s<seed>``, ``<label>-s<seed>``), so one run could be trained twice under two
names. The name is ``<method>-s<seed>-<hash of FinetuneConfig.to_dict()>``: readable in a listing,
and a changed setting always gets a new directory. ``interference.train.finetune`` is still the
one writer of a run directory (it claims, locks and seals it); the store only names and asks.

In-memory runs (hypothesis cells, ``train.finetune_on``) are stored by the cell grid
(``hypotheses.grid``), keyed the same way: by a hash of everything that made them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from interference.io import config_hash, verify_run_dir
from interference.train import RUN_FILES, FinetuneConfig, RunRecord, check_same_base, finetune, load_run


def run_name(cfg: FinetuneConfig) -> str:
    """``<method>-s<seed>-<config hash>``: the one name of a run directory."""
    return f"{cfg.method}-s{cfg.seed}-{config_hash(cfg.to_dict(), 10)}"


class RunStore:
    """Run directories under ``root``, one per config (``run_name``)."""

    def __init__(self, root: str | Path, progress: bool = False, device: str | None = None):
        self.root, self.progress, self.device = Path(root), progress, device
        self.trained = 0
        self.reused = 0

    def path(self, cfg: FinetuneConfig) -> Path:
        return self.root / run_name(cfg)

    def is_done(self, cfg: FinetuneConfig) -> bool:
        """A finished run of exactly this config is stored: its metrics and config are there, the
        config is this one and its seal verifies (a damaged run is not done: ``get`` hands it to
        ``finetune``, which says so and trains it again)."""
        d = self.path(cfg)
        try:
            return (d / "metrics.json").exists() and \
                json.loads((d / "config.json").read_text()) == json.loads(json.dumps(cfg.to_dict())) and \
                not verify_run_dir(d, RUN_FILES)
        except (OSError, ValueError):
            return False

    def get(self, cfg: FinetuneConfig, callbacks: Sequence = (), status: Callable[[str], None] | None = None) -> RunRecord:
        """The finished run of ``cfg``: read back when stored, trained into its directory otherwise
        (``callbacks`` are the run's, e.g. probe snapshots; a stored run is never retrained)."""
        out = self.path(cfg)
        if self.is_done(cfg):
            rec = load_run(out)
            check_same_base(rec)  # a base re-trained under the same hash is refused, never mixed
            self.reused += 1
            return rec
        if status is not None:
            status(f"training {out.name}")
        rec = finetune(cfg, out, callbacks=callbacks, progress=self.progress, device=self.device)
        self.trained += 1
        return rec
