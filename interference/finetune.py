"""Fine-tune the cached base model with one method and write a run directory.

    python -m interference.finetune --method sft --unknown-fraction 0.5 --out runs/sft
    python -m interference.finetune --method self_distill --kl-weight 1 --temperature 0.5 --teacher format --out runs/sd
    python -m interference.finetune --method freeze --groups attn --quick --out runs/attn
    python -m interference.finetune --method lora --option rank=4 --out runs/lora

Method options are passed to the method's config; an option the method does not have is an
error that lists the valid ones. Bad input prints ``error: <one sentence>`` and exits 2 before
anything is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from interference.io import RunDirError
from interference.methods import METHODS, MethodError
from interference.models import ModelError
from interference.pretrain import BaseSpec
from interference.sft_data import SFTDataConfig, SFTDataError
from interference.world import WorldConfig, WorldConfigError

# CLI flag -> method config field; only flags the user sets are passed on.
METHOD_FLAGS = {"groups": str, "kl_weight": float, "temperature": float, "teacher": str, "direction": str,
                "positions": str, "weight": float, "match": str, "ratio": float, "rank": int, "targets": str}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one sentence, exit 2, like every other bad input
        print(f"error: {message}.", file=sys.stderr)
        raise SystemExit(2)


def _parse_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise MethodError(f"--option {text!r} is not KEY=VALUE.")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def build_config(args) -> "FinetuneConfig":
    from interference.train import FinetuneConfig

    options = {k: getattr(args, k) for k in METHOD_FLAGS if getattr(args, k) is not None}
    options.update(dict(_parse_option(o) for o in args.option))
    base = BaseSpec.default(quick=args.quick)
    if args.world:
        base = dataclasses.replace(base, world=WorldConfig.load(args.world))
    data = SFTDataConfig.quick() if args.quick else SFTDataConfig()
    data_kw = {"unknown_fraction": args.unknown_fraction}
    if args.n_facts is not None:
        data_kw["n_facts"] = args.n_facts
    if args.data_seed is not None:
        data_kw["seed"] = args.data_seed
    data = SFTDataConfig(**{**data.to_dict(), **data_kw})
    kw = {"base": base.to_dict(), "base_dir": args.base_dir, "data": data, "method": args.method,
          "method_options": options, "seed": args.seed}
    if args.quick:
        kw = {**FinetuneConfig.quick().to_dict(), **kw}
    for k in ("steps", "epochs", "lr", "batch_size", "eval_every"):
        if getattr(args, k) is not None:
            kw[k] = getattr(args, k)
    return FinetuneConfig(**kw)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="python -m interference.finetune", description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, help=f"one of {sorted(METHODS)}")
    ap.add_argument("--out", required=True, help="run directory")
    ap.add_argument("--unknown-fraction", type=float, default=0.5, help="share of Unknown facts in the SFT set")
    ap.add_argument("--n-facts", type=int, help="SFT set size")
    ap.add_argument("--data-seed", type=int, help="which facts are drawn (default 0)")
    ap.add_argument("--quick", action="store_true", help="tiny world, model and run (seconds)")
    ap.add_argument("--world", help="world config JSON (as written by WorldConfig.save)")
    ap.add_argument("--base-dir", help="a pre-training run directory to fine-tune instead of the cached base")
    ap.add_argument("--seed", type=int, default=0, help="data-order seed")
    ap.add_argument("--steps", type=int, help="optimizer steps (overrides --epochs)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    ap.add_argument("--no-progress", action="store_true")
    for flag, typ in METHOD_FLAGS.items():
        ap.add_argument("--" + flag.replace("_", "-"), type=typ, help="method option (see the method's config)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="any other method option")
    args = ap.parse_args(argv)
    try:
        from interference.threads import configure_threads
        from interference.train import finetune
        configure_threads(args.device)
        cfg = build_config(args)
        rec = finetune(cfg, args.out, progress=not args.no_progress, device=args.device, resume=args.resume)
    except (MethodError, SFTDataError, RunDirError, ModelError, WorldConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(rec.metrics, args.out))
    return 0


def format_summary(m: dict, out) -> str:
    def f(k):
        return f"{m[k]['final']:.3f} (peak {m[k]['peak']:.3f})"
    return (f"run: {out}\n  task {f('task_accuracy')}   new facts {f('plasticity_accuracy')}   "
            f"held-out known {f('stability_accuracy')}   base {m['stability_accuracy_base']['final']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
