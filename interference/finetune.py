"""Fine-tune the cached base model with one method and write a run directory.

    python -m interference.finetune --method sft --unknown-fraction 0.5 --out runs/sft
    python -m interference.finetune --method self_distill --kl-weight 1 --temperature 0.5 --teacher format --out runs/sd
    python -m interference.finetune --method freeze --groups attn --quick --out runs/attn
    python -m interference.finetune --method lora --option rank=4 --out runs/lora
    python -m interference.finetune --method sft --exclude runs/forecast/exclude.json --replay-facts runs/forecast/replay.json --out runs/curated
    python -m interference.finetune --method sft --model ~/models/Qwen2.5-1.5B --data ~/data/entity_questions --out runs/q
    accelerate launch --multi_gpu --num_processes 8 -m interference.finetune --method sft ...   (see docs/REAL_MODELS.md)

Method options are passed to the method's config; an option the method does not have is an
error that lists the valid ones. Bad input prints ``error: <one sentence>`` and exits 2 before
anything is written.
"""
from __future__ import annotations

import dataclasses
import json
import sys

from interference.cli import Parser, device_name, finite_float, run_main
from interference.methods import METHODS, MethodError
from interference.bases import BaseSpec
from interference.real_data import add_arguments as add_real_arguments, resolve_model_and_data
from interference.sft_data import SFTDataConfig
from interference.world import WorldConfig

# CLI flag -> method config field; only flags the user sets are passed on.
METHOD_FLAGS = {"groups": str, "kl_weight": finite_float, "temperature": finite_float, "teacher": str,
                "direction": str, "positions": str, "weight": finite_float, "match": str, "ratio": finite_float,
                "rank": int, "targets": str}


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
    for k in ("n_task", "n_stability"):
        if getattr(args, k) is not None:
            data_kw[k] = getattr(args, k)
    if getattr(args, "min_known_share", None) is not None:
        data_kw["min_known_share"] = args.min_known_share
    data = SFTDataConfig(**{**data.to_dict(), **data_kw})
    real = resolve_model_and_data(args)
    kw = {"base": base.to_dict(), "base_dir": args.base_dir, "data": data, "method": args.method,
          "method_options": options, "seed": args.seed, "real": real.to_dict() if real else None}
    if args.quick:
        kw = {**FinetuneConfig.quick().to_dict(), **kw}
    for k in ("steps", "epochs", "lr", "batch_size", "eval_every", "grad_accum", "precision", "strategy"):
        if getattr(args, k) is not None:
            kw[k] = getattr(args, k)
    if getattr(args, "exclude", None):
        kw["exclude"] = read_id_list(args.exclude, "exclude")
    if getattr(args, "replay_facts", None):
        kw["replay_facts"] = read_id_list(args.replay_facts, "replay")
    return FinetuneConfig(**kw)


def read_id_list(path: str, key: str) -> list[str]:
    """Fact ids from a JSON file: a list of ids, or an object whose ``key`` is one (what
    ``python -m interference.forecast --culprits`` writes: exclude.json, replay.json)."""
    from pathlib import Path
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{key} file {path} does not exist; pass the {key}.json that "
                         "`python -m interference.forecast --culprits K` writes.") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{key} file {path} is not JSON; pass a JSON list of fact ids.") from None
    ids = d.get(key) if isinstance(d, dict) else d
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{key} file {path} holds no list of fact ids (a JSON list, or an object with a "
                         f"{key!r} list).")
    return ids


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m interference.finetune", description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, help=f"one of {sorted(METHODS)}")
    ap.add_argument("--out", required=True, help="run directory")
    ap.add_argument("--unknown-fraction", type=finite_float, default=0.5, help="share of Unknown facts in the SFT set")
    ap.add_argument("--n-facts", type=int, help="SFT set size")
    ap.add_argument("--n-task", type=int, help="held-out Known facts for task learning")
    ap.add_argument("--n-stability", type=int, help="held-out HighlyKnown facts for stability")
    ap.add_argument("--data-seed", type=int, help="which facts are drawn (default 0)")
    ap.add_argument("--quick", action="store_true", help="tiny world, model and run (seconds)")
    ap.add_argument("--world", help="world config JSON (as written by WorldConfig.save)")
    ap.add_argument("--base-dir", help="a pre-training run directory to fine-tune instead of the cached base")
    ap.add_argument("--seed", type=int, default=0, help="data-order seed")
    ap.add_argument("--steps", type=int, help="optimizer steps (overrides --epochs)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--lr", type=finite_float)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--grad-accum", type=int, help="micro-batches per update (the global batch stays --batch-size)")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"],
                    help="auto (default): bf16 autocast on a GPU that has it, else fp32; fp16: float16 autocast "
                         "with a loss scaler (CUDA only, for GPUs without bfloat16)")
    ap.add_argument("--strategy", choices=["ddp", "fsdp"],
                    help="under accelerate launch: ddp (default) replicates the model; fsdp shards it with FSDP2 "
                         "(sft and self_distill; see docs/REAL_MODELS.md)")
    ap.add_argument("--exclude", metavar="FILE", help="JSON list of SFT fact ids to drop (e.g. the forecast's exclude.json)")
    ap.add_argument("--replay-facts", metavar="FILE",
                    help="JSON list of known fact ids to add to the SFT set (e.g. the forecast's replay.json)")
    ap.add_argument("--device", default="auto", type=device_name, help="auto (CUDA if available), cpu or cuda")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    ap.add_argument("--no-progress", action="store_true")
    for flag, typ in METHOD_FLAGS.items():
        ap.add_argument("--" + flag.replace("_", "-"), type=typ, help="method option (see the method's config)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="any other method option")
    add_real_arguments(ap)
    args = ap.parse_args(argv)

    def body() -> int:  # DataError and DistributedError are ValueErrors: run_main makes them one sentence
        from interference.threads import configure_threads
        from interference.train import finetune
        configure_threads(args.device)
        cfg = build_config(args)
        rec = finetune(cfg, args.out, progress=not args.no_progress, device=args.device, resume=args.resume)
        print(format_summary(rec.metrics, args.out))
        return 0
    return run_main(body)


def format_summary(m: dict, out) -> str:
    def f(k):
        return f"{m[k]['final']:.3f} (peak {m[k]['peak']:.3f})"
    return (f"run: {out}\n  task {f('task_accuracy')}   new facts {f('plasticity_accuracy')}   "
            f"held-out known {f('stability_accuracy')}   base {m['stability_accuracy_base']['final']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
