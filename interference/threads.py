"""How many CPU threads torch uses: decided here, once, for every entry point.

Why: the models are tiny (d_model 128), so a second intra-op thread buys little even on an idle
machine, while on a shared one OpenMP worker threads that *spin* waiting for each other turn
every small op into a scheduling contest: with 3-5 other CPU-bound processes on 2 cores,
pre-training fell from ~14 to 0.2-1 step/s (15-70x, far past a fair share). One thread per
process, with OpenMP told to sleep rather than spin when it does wait, makes a competing process
cost about its fair share (benchmarks/shared_machine.py measures it).

``OMP_WAIT_POLICY`` is read when the OpenMP runtime loads (with torch), so it is set when the
``interference`` package is imported (its ``__init__`` imports this module before anything
imports torch); a value the user already set is kept. ``INTERFERENCE_THREADS`` overrides the
thread count (e.g. ``INTERFERENCE_THREADS=4`` on a quiet many-core machine with a larger model).
"""
from __future__ import annotations

import os

ENV_THREADS = "INTERFERENCE_THREADS"
DEFAULT_THREADS = 1  # see the module docstring: tiny models, shared cores

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def thread_count() -> int:
    """The intra-op thread count to use: ``$INTERFERENCE_THREADS`` or 1."""
    raw = os.environ.get(ENV_THREADS, "")
    try:
        n = int(raw) if raw else DEFAULT_THREADS
    except ValueError:
        raise ValueError(f"{ENV_THREADS}={raw!r} is not a whole number of threads; set it to e.g. 1 or unset it.") from None
    if n < 1:
        raise ValueError(f"{ENV_THREADS}={n} must be at least 1.")
    return n


def configure_threads(device=None) -> int:
    """Set torch's intra-op threads for CPU work (a CUDA run is left alone); returns the count.

    Every CLI entry point (pretrain, finetune, run_hypothesis) calls this first."""
    import torch
    dev = str(device) if device is not None else "cpu"
    if dev in ("auto", "") and torch.cuda.is_available():
        return torch.get_num_threads()
    if not dev.startswith("cuda"):
        torch.set_num_threads(thread_count())
    return torch.get_num_threads()
