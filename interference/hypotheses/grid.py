"""The cached grid runner: a hypothesis' cells, each computed once and stored as a sealed JSON.

A grid is a list of ``Cell``s (one fine-tuning run or one measurement each). A cell's result is
stored under ``<out>/cells/<kind>-<hash of its key>.json``; a re-run with the same key loads it
instead of recomputing, so extending ``--seeds`` reuses the seeds already done and hypotheses that
share a run (``all``) train it once. A stored cell also records the weights fingerprint of the
base it was computed from; one whose fingerprint differs from the current base's is recomputed,
never mixed with cells of other weights (a config hash says what a base was asked to be, not what
it is: thread counts and machines change the weights).

This module computes and stores; it never draws (plots are the CLI's, after the verdict).
``interference.workers.run_in_workers`` spreads a grid over forked processes that store cells
exactly as a serial run would; the serial pass afterwards only reads them.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from interference.io import config_hash, json_ready, read_checked_json, write_checked_json
from interference.workers import WorkerError, run_in_workers  # noqa: F401  (the package's one pool, named here for grid callers)


def seed_range(cfg) -> range:
    """The seeds a config runs: ``first_seed`` .. ``first_seed + seeds - 1``. Why a first seed: a
    pre-registered confirmation (or the rest of a registered seed count) runs fresh seeds beside
    saved ones without recomputing them; configs without the field start at 0."""
    first = getattr(cfg, "first_seed", 0)
    return range(first, first + cfg.seeds)


@dataclass
class Cell:
    """One unit of work: ``fn()`` -> JSON-able dict, cached under the hash of ``key``. ``base`` is
    the BaseSpec whose weights the result depends on (None: it depends on no model)."""
    kind: str
    key: dict
    fn: Callable[[], dict]
    label: str = ""
    base: Any = None

    @property
    def file(self) -> str:
        return f"{self.kind}-{config_hash(self.key)}.json"


@dataclass
class GridReport:
    results: list[dict]
    computed: int = 0
    reused: int = 0
    stale: int = 0  # stored cells of other base weights, recomputed
    seconds: float = 0.0


def run_grid(cells: Sequence[Cell], cache: str | Path, progress: bool = True, desc: str = "grid",
             fingerprint: Callable[[Any], str] | None = None) -> GridReport:
    """Run every cell not already stored under ``cache``; one progress bar for the whole grid.

    ``fingerprint(base_spec)`` gives the current weights fingerprint of a cell's base; a stored
    cell computed from other weights is recomputed (and said so on stderr), never reused."""
    cache = Path(cache)
    rep = GridReport(results=[])
    t0 = time.time()
    stale: dict[tuple, int] = {}
    bar = tqdm(total=len(cells), desc=desc, disable=not progress, dynamic_ncols=True)
    for c in cells:
        path = cache / c.file
        fp = fingerprint(c.base) if (fingerprint is not None and c.base is not None) else None
        res = None
        stored = _stored_cell(path, c) if path.exists() else None
        if stored is not None:
            if stored.get("fingerprint") == fp:
                res = stored["result"]
            else:
                k = (stored.get("fingerprint"), fp)
                stale[k] = stale.get(k, 0) + 1
        if res is None:
            bar.set_postfix_str(c.label or c.kind)
            res = json_ready(c.fn())  # as a later run will read it back: a missing number is None
            write_checked_json(path, {"kind": c.kind, "key": c.key, "fingerprint": fp, "result": res})
            rep.computed += 1
        else:
            rep.reused += 1
        rep.results.append(res)
        bar.update(1)
    bar.close()
    for (old, new), n in stale.items():
        print(f"{desc}: {n} stored cell(s) came from base weights {old or 'of unknown fingerprint'}, not the "
              f"current base's {new}; recomputed them instead of mixing results of different weights.",
              file=sys.stderr)
    rep.stale = sum(stale.values())
    rep.seconds = time.time() - t0
    return rep


def _stored_cell(path: Path, c: Cell) -> dict | None:
    """The stored cell ``c`` ({"kind", "key", "fingerprint", "result"}), or None (with a note on
    stderr) when the file is damaged: not UTF-8 JSON, the wrong shape, another key, or content
    that fails its checksum. A damaged cell is recomputed, never trusted."""
    stored, why = read_checked_json(path)
    if stored is not None and stored.get("key") != json.loads(json.dumps(c.key)):
        stored, why = None, "it was computed for another key"
    if stored is not None and not isinstance(stored.get("result"), dict):
        stored, why = None, "it holds no result object"
    if stored is None:
        tqdm.write(f"note: cell {path} is damaged ({why}); computing it again.", file=sys.stderr)
    return stored


class CellLookupError(KeyError):
    """A summary asked for a cell the grid does not hold exactly once."""


class ResultSet(list):
    """A grid's results, looked up by what the cell *is* (items of its key), never by position.

    Still a list in cell order, for summaries written before lookups existed. ``one(arm="sft",
    seed=0)`` returns the result of the single cell whose key holds those items, and refuses (a
    ``CellLookupError`` naming the query) when none or several match, so a reordered or extended
    grid can never feed a statistic the wrong run.
    """

    def __init__(self, cells: Sequence[Cell], results: Sequence[dict]):
        if len(cells) != len(results):
            raise ValueError(f"{len(cells)} cells but {len(results)} results.")
        super().__init__(results)
        self.keys = [json.loads(json.dumps(c.key)) for c in cells]

    def matching(self, **items) -> list[dict]:
        want = json.loads(json.dumps(items))
        return [r for k, r in zip(self.keys, self) if all(k.get(n) == v for n, v in want.items())]

    def one(self, **items) -> dict:
        got = self.matching(**items)
        if len(got) != 1:
            raise CellLookupError(f"{len(got)} cells match {items}; a summary needs exactly one.")
        return got[0]
