"""Benchmark: what each fix for SFT's forgetting costs per training step, and what aiming costs once.

    python benchmarks/fix_cost.py                 # writes benchmarks/results/fix_cost.json

On the pinned default base (4 layers x d128) and the aimed-replay experiment's first SFT set (400
facts, data seed 100): seconds per optimizer step of plain SFT, of SFT with a 5% replay list (20
watched facts added to the set: same batch size, so the same step), and of self-distillation
(cross-entropy + KL to the frozen format teacher: one more forward pass per step). Per-step cost is
the difference between a long and a short run divided by the extra steps, so the evaluations at
the ends and the model copy cancel. Also the one-off cost of aiming: the forecast's features and
risk plus the culprits of every watched fact (``hypotheses.culprits.plan``). CPU seconds beside
wall seconds: on a shared machine the wall time measures the load too.
"""
from __future__ import annotations

import argparse
import dataclasses
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


def run_seconds(ctx, train, sft, steps: int) -> tuple[float, float]:
    from interference.hypotheses.arms import fixed_steps
    from interference.train import finetune_on
    model, tok = ctx.base()
    s = fixed_steps(dataclasses.replace(sft, eval_every=10 ** 6), steps, 0)
    teacher = ctx.teacher(s.teacher_recipe()) if s.method == "self_distill" else None
    t0, c0 = time.perf_counter(), time.process_time()
    finetune_on(model, tok, list(train), s, teacher=teacher, world=ctx.world)
    return time.perf_counter() - t0, time.process_time() - c0


def per_step(ctx, train, sft, short: int, long: int) -> dict:
    a, b = run_seconds(ctx, train, sft, short), run_seconds(ctx, train, sft, long)
    return {"wall_seconds_per_step": round((b[0] - a[0]) / (long - short), 4),
            "cpu_seconds_per_step": round((b[1] - a[1]) / (long - short), 4)}


def main(argv=None) -> int:
    from interference.bases import BaseSpec
    from interference.hypotheses import aimed_replay as A
    from interference.hypotheses import culprits as C
    from interference.hypotheses.context import Context
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--short", type=int, default=10)
    ap.add_argument("--long", type=int, default=60)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fix_cost.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = A.AimedReplayConfig()
    ctx = Context(BaseSpec.default(), out=ROOT / "runs" / "bench_fix_cost", progress=False)
    ctx.base()
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    p = C.plan(cfg.culprits(), ctx, 0)
    aim = {"wall_seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(time.process_time() - c0, 2),
           "n_watched": len(p.watch), "n_sft": len(p.train)}
    ctx.teacher(cfg.sft.teacher_recipe())  # built (or loaded) before timing, as a run does once
    plain = A.arm_train(cfg, p, 0, "full")
    replay = A.arm_train(cfg, p, 0, A.arm_name("targeted", A.PRIMARY_BUDGET))
    res = {"sft": per_step(ctx, plain, cfg.sft, args.short, args.long),
           "replay_targeted_5pct": per_step(ctx, replay, cfg.sft, args.short, args.long),
           "self_distill": per_step(ctx, plain, dataclasses.replace(cfg.sft, method="self_distill"),
                                    args.short, args.long),
           "aiming_once": aim, "steps_per_run": cfg.sft.max_steps}
    res["self_distill_over_sft_cpu"] = round(res["self_distill"]["cpu_seconds_per_step"]
                                             / res["sft"]["cpu_seconds_per_step"], 2)
    res["replay_over_sft_cpu"] = round(res["replay_targeted_5pct"]["cpu_seconds_per_step"]
                                       / res["sft"]["cpu_seconds_per_step"], 2)
    res.update({"load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "threads": args.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__,
                "platform": platform.platform(), "batch_size": cfg.sft.batch_size,
                "note": "per step = (long run - short run) / extra steps, evaluations and model copy cancel"})
    atomic_write_json(args.out, res)
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
