"""Benchmark: what probes cost during fine-tuning, and how long a 10k x 10k overlap takes.

    python benchmarks/probes.py                 # writes benchmarks/results/probes.json
    python benchmarks/probes.py --steps 200 --threads 1

- ``hooked_over_plain``: wall time of the default fine-tuning run (default world, default model
  size, default FinetuneConfig) with a ProbeCallback at its default cadence, over the same run
  without it, measured side by side in one process, alternating, best of ``--repeats``.
  Goal <= 1.15. ``hooked_over_plain_within_run`` = hooked / (hooked - time spent capturing),
  from the hooked run alone: immune to load changes between the two runs.
- ``overlap_10k_seconds``: cosine overlap (max and top-k mean) of 10k existing x 10k new facts
  over every layer of the default model (4 x d_model 128). Goal < 5 s on 2 CPU cores.

Why a *timing base*: step cost does not depend on what the weights know, and pre-training the
default base takes many minutes, so unless ``--base-dir`` names a real one the benchmark saves a
randomly initialised model of the default size with a SliCK file that marks every pre-trained
fact Known. Fine-tuning then runs the exact code path and tensor shapes of a real run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from interference.io import atomic_write_json, atomic_write_text, json_line  # noqa: E402
from interference.metrics.overlap import cosine_overlap, knn_overlap, linear_cka  # noqa: E402
from interference.probes import DEFAULT_EVERY, ProbeCallback  # noqa: E402


def make_timing_base(out: Path, seed: int = 0) -> Path:
    """A default-size, untrained base with a SliCK file: Known = every pre-trained fact."""
    from interference.models import build_model, save_model
    from interference.bases import SLICK_FILE, BaseSpec
    from interference.tokenizer import world_tokenizer
    from interference.world import World

    spec = BaseSpec.default()
    world = World(spec.world)
    tok = world_tokenizer(world)
    torch.manual_seed(seed)
    save_model(build_model(spec.model, len(tok), tok, device="cpu"), spec.model, tok, out)
    rows = []
    for f in world.facts():
        known = f.split != "unseen"
        rows.append({"fact_id": f.fact_id, "split": f.split, "category": "HighlyKnown" if known else "Unknown",
                     "p_greedy": float(known), "p_sample": float(known)})
    atomic_write_text(out / SLICK_FILE, "".join(json_line(r) for r in rows))
    atomic_write_json(out / "config.json", {**spec.to_dict(), "hash": spec.hash(), "timing_base": True})
    return out


def time_finetune(base_dir: Path, work: Path, steps: int | None, repeats: int) -> dict:
    """Alternate plain and probed runs of the same config; best wall time of each."""
    from interference.train import FinetuneConfig, finetune

    cfg = dataclasses.replace(FinetuneConfig(base_dir=str(base_dir)), **({"steps": steps} if steps else {}))
    plain, hooked, probe_seconds = [], [], []
    for r in range(repeats):
        for kind in ("plain", "hooked"):
            cb = ProbeCallback(every=DEFAULT_EVERY)
            t0 = time.perf_counter()
            rec = finetune(cfg, work / f"{kind}-{r}", callbacks=[cb] if kind == "hooked" else [], progress=False)
            dt = time.perf_counter() - t0
            (hooked if kind == "hooked" else plain).append(dt)
            if kind == "hooked":
                probe_seconds.append(cb.seconds)
    # On a shared machine the two wall times drift with other jobs' load; the capture time is
    # measured inside the hooked run itself, so hooked / (hooked - capture) is the steadier figure.
    within = [h / (h - c) for h, c in zip(hooked, probe_seconds)]
    return {"plain_seconds": plain, "hooked_seconds": hooked, "probe_capture_seconds": probe_seconds,
            "hooked_over_plain": min(hooked) / min(plain), "hooked_over_plain_within_run": max(within), "steps": rec.metrics["steps"],
            "eval_every": cfg.eval_every, "probe_every": DEFAULT_EVERY, "n_probed_facts": len(cb.facts),
            "probe_hooks": cb.hooks, "probe_positions": cb.positions}


def time_overlap(n: int = 10_000, layers: int = 4, d: int = 128, k: int = 10, repeats: int = 3) -> dict:
    g = torch.Generator().manual_seed(0)
    existing, new = torch.randn(layers, n, d, generator=g), torch.randn(layers, n, d, generator=g)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    return {"overlap_10k_seconds": best(lambda: cosine_overlap(existing, new, k=k)),
            "knn_10k_seconds": best(lambda: knn_overlap(existing, new, k=k)),
            "cka_10k_seconds": best(lambda: linear_cka(existing, new)),
            "overlap_shape": [layers, n, d], "k": k}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-dir", help="a real pre-trained default base (default: a timing base)")
    ap.add_argument("--steps", type=int, help="fine-tuning steps (default: the FinetuneConfig default)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "probes.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict = {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "load_average_before": os.getloadavg(), "torch": torch.__version__, "python": platform.python_version()}
    result.update(time_overlap())
    if not args.skip_finetune:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(args.base_dir) if args.base_dir else make_timing_base(Path(tmp) / "base")
            result["base"] = str(args.base_dir or "timing base (untrained, default size)")
            result.update(time_finetune(base, Path(tmp) / "runs", args.steps, args.repeats))
    result["load_average_after"] = os.getloadavg()
    result["goals"] = {"hooked_over_plain": "<= 1.15", "overlap_10k_seconds": "< 5"}
    atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list) or len(v) < 6}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
