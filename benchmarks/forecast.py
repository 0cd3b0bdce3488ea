"""Benchmark: the forecast for 10,000 known facts against 1,000 SFT facts, and its scaling.

    python benchmarks/forecast.py                 # writes benchmarks/results/forecast.json
    python benchmarks/forecast.py --threads 1

- ``seconds_10k_x_1k``: ``forecast.predict.compute_features`` (every feature group: fragility,
  competition, name pieces, overlap at every layer and two positions, gradient alignment per unit
  with the pair products) for 10,000 watched facts x 1,000 SFT facts on the default model
  (4 layers x d128). Goal < 60 s on 2 CPU cores. Combining the features is a dot product.
- ``cpu_seconds_10k_x_1k``: the process's CPU time for the same (one thread by default): on a
  machine shared with other jobs the wall time measures their load as much as ours.
- ``scaling``: the same at 3 sizes of each count with the other fixed (watched 2,500 / 5,000 /
  10,000 at 1,000 SFT facts; SFT 250 / 500 / 1,000 at 10,000 watched), and the CPU-time ratios:
  linear cost means doubling a count at most doubles the time (fixed costs make it less).

Uses the cached default base when it exists (``$INTERFERENCE_CACHE``), else a randomly
initialised model of the default size: feature cost does not depend on what the weights know.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from interference.io import atomic_write_json  # noqa: E402


def model_and_facts():
    from interference.models import build_model, load_model
    from interference.bases import BaseSpec, base_dir
    from interference.tokenizer import world_tokenizer
    from interference.world import World

    spec = BaseSpec.default()
    world = World(spec.world)
    base = base_dir(spec)
    if (base / "model.safetensors").exists():
        model, _, tok = load_model(base, device="cpu")
        which = str(base.name)
    else:
        tok = world_tokenizer(world)
        torch.manual_seed(0)
        model, which = build_model(spec.model, len(tok), tok, device="cpu"), "random init (default size)"
    known = world.split("pretrain_qa") + world.split("statement_only")
    watch = [f for t in range(3) for f in world.facts(known, template=t)]
    watch += [f for t in (1, 2) for f in world.facts(world.split("unseen"), template=t)]
    train = world.facts(world.split("unseen"), template=0)
    return model, tok, watch, train, which


def time_once(model, tok, watch, train) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one forecast."""
    from interference.forecast.predict import compute_features
    new_ids = {f.fact_id for f in train[::2]}  # half Unknown, as the default SFT set
    t0, c0 = time.perf_counter(), time.process_time()
    compute_features(model, tok, watch, train, new_ids)
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1, help="1: CPU time is then the idle single-core cost")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "forecast.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tok, watch, train, which = model_and_facts()
    time_once(model, tok, watch[:200], train[:100])  # warm-up (allocator, lazy imports)
    load_before = os.getloadavg()[0]
    sizes_w, sizes_n = (2500, 5000, 10000), (250, 500, 1000)
    by_watch = {n: time_once(model, tok, watch[:n], train[:1000]) for n in sizes_w}
    by_new = {n: time_once(model, tok, watch[:10000], train[:n]) for n in sizes_n[:2]}
    by_new[1000] = by_watch[10000]
    cpu_w = {k: v[1] for k, v in by_watch.items()}
    cpu_n = {k: v[1] for k, v in by_new.items()}
    res = {
        "seconds_10k_x_1k": round(by_watch[10000][0], 2), "goal_seconds": 60,
        # CPU seconds of the process: what the forecast costs, whatever else shares the machine;
        # with one thread it bounds the wall time on an otherwise idle core.
        "cpu_seconds_10k_x_1k": round(cpu_w[10000], 2),
        "scaling": {"wall_watched_at_1000_new": {str(k): round(v[0], 2) for k, v in by_watch.items()},
                    "wall_new_at_10000_watched": {str(k): round(v[0], 2) for k, v in sorted(by_new.items())},
                    "cpu_watched_at_1000_new": {str(k): round(v, 2) for k, v in cpu_w.items()},
                    "cpu_new_at_10000_watched": {str(k): round(v, 2) for k, v in sorted(cpu_n.items())},
                    "ratio_watched_10k_over_5k": round(cpu_w[10000] / cpu_w[5000], 2),
                    "ratio_watched_5k_over_2_5k": round(cpu_w[5000] / cpu_w[2500], 2),
                    "ratio_new_1000_over_500": round(cpu_n[1000] / cpu_n[500], 2),
                    "ratio_new_500_over_250": round(cpu_n[500] / cpu_n[250], 2)},
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "model": which, "threads": args.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "platform": platform.platform(),
        "note": ("wall and CPU time of compute_features (all feature groups, method sft); ratios from CPU time, "
                 "because the wall time of a machine shared with other jobs moves with their load"),
    }
    atomic_write_json(args.out, res)
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
