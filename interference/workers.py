"""The one worker pool: independent pieces of work spread over forked processes.

Both parallel paths use it: the cached grid runner's cells (``hypotheses.runner``) and the figure
runs that a figure set lacks (``figures.runs.train_missing``). Each worker gets an interleaved
share of the items (``items[i::jobs]``) and stores what it computes itself (a sealed cell, a run
directory); nothing comes back through a pipe, so a worker's result is the same file a serial run
would write, and the serial pass afterwards only reads it.

Why fork and not spawn: a grid's work is a closure over its in-memory context (the base and
teacher caches, the cells' compute functions), which spawn would have to pickle and cannot; a
forked worker inherits it, and starts in milliseconds instead of re-importing torch (seconds each).
Spawn's one advantage is safety with a parent that already runs intra-op threads (a forked child
of a multi-threaded OpenMP runtime can hang); every entry point here runs torch on one thread
(``interference.threads``), so there is no thread pool to inherit. A caller that raises the
thread count (``INTERFERENCE_THREADS``) should set ``torch.set_num_threads(1)`` inside ``run_part``,
as the figure runs do.
"""
from __future__ import annotations

import multiprocessing
from typing import Callable, Sequence


class WorkerError(RuntimeError):
    """A worker process ended with an error; what it had not stored is not stored."""


def run_in_workers(items: Sequence, run_part: Callable[[list], object], jobs: int) -> int:
    """Run ``run_part`` on ``jobs`` interleaved shares of ``items`` (items[i::jobs]), each in a
    forked process (one share only: in this process); returns the number of workers started."""
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be at least 1.")
    parts = [list(items[i::jobs]) for i in range(jobs)]
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
        raise WorkerError(f"{len(bad)} of {len(procs)} worker processes failed (exit codes {bad}); what they "
                          "finished is stored, re-run the same command to compute the rest.")
    return len(procs)
