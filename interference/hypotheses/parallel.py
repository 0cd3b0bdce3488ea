"""Compute a grid's cells in several worker processes.

Why: on a CPU shared with other jobs each process gets a slice of a core, and the tiny models
gain nothing from more threads (see ``run_hypothesis``), so independent fine-tuning runs finish
sooner as separate processes. Workers are forked (they inherit the cells' closures and the
context; each loads the bases it needs), compute their share of the cells and store them in
the grid's cache exactly as a serial run would; the caller then runs the grid serially, which
only reads what the workers stored. A failed worker is reported, never silently skipped.
"""
from __future__ import annotations

import multiprocessing
from typing import Callable, Sequence


class WorkerError(RuntimeError):
    """A worker process ended with an error; its cells are not stored."""


def run_in_workers(cells: Sequence, run_part: Callable[[list], object], jobs: int) -> int:
    """Run ``run_part`` on ``jobs`` interleaved shares of ``cells`` (cells[i::jobs]), each in a
    forked process; returns the number of workers started."""
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be at least 1.")
    parts = [list(cells[i::jobs]) for i in range(jobs)]
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        if parts:
            run_part(parts[0])
        return len(parts)
    mp = multiprocessing.get_context("fork")
    procs = [mp.Process(target=run_part, args=(p,), daemon=False) for p in parts]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise WorkerError(f"{len(bad)} of {len(procs)} worker processes failed (exit codes {bad}); the cells they "
                          "finished are stored, re-run the same command to compute the rest.")
    return len(procs)
