"""Fine-tune the cached base model with one method and write a run directory.

    python -m interference.finetune --method sft --unknown-fraction 0.5 --out runs/sft
    python -m interference.finetune --method self_distill --kl-weight 1 --temperature 0.5 --teacher format --out runs/sd
    python -m interference.finetune --method freeze --groups attn --quick --out runs/attn
    python -m interference.finetune --method lora --option rank=4 --out runs/lora
    python -m interference.finetune --method sft --exclude runs/forecast/exclude.json --replay-facts runs/forecast/replay.json --out runs/curated
    python -m interference.finetune --method sft --model ~/models/Qwen2.5-1.5B --data ~/data/entity_questions --out runs/q
    accelerate launch --multi_gpu --num_processes 8 -m interference.finetune --method sft ...   (see docs/REAL_MODELS.md)

Method options are passed to the method's config; an option the method does not have is an
error that lists the valid ones. An interrupted run resumes by itself when the same command is
run again (as pre-training does). Bad input prints ``error: <one sentence>`` and exits 2 before
anything is written.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import io
import json
import sys
import tokenize
from functools import lru_cache
from pathlib import Path

from interference.cli import (Parser, add_common, add_real_arguments, add_resume, add_seed, finite_float, out_dir,
                              run_main, seed_int)

# CLI flag -> method config field; only flags the user sets are passed on.
# FinetuneConfig's defaults, shown in --help without importing it (torch); tests/test_cli.py
# checks them against the dataclass.
RUN_DEFAULTS = {"epochs": 40, "lr": 3e-4, "batch_size": 32, "eval_every": 50}
METHOD_FLAGS = {"groups": str, "kl_weight": finite_float, "temperature": finite_float, "teacher": str,
                "direction": str, "positions": str, "weight": finite_float, "match": str, "ratio": finite_float,
                "rank": int, "targets": str}


@lru_cache(maxsize=1)
def method_catalog() -> dict[str, dict[str, tuple[str, str]]]:
    """method name -> {option: (default as written, what it does)}, read from the source of the
    method configs (each field's comment: on its line, or the comment block just above it)
    without importing them: importing a method loads torch, and ``--help`` must not.
    ``tests/test_cli.py`` checks this against the imported configs, so it cannot drift."""
    spec = importlib.util.find_spec("interference.methods")  # imports only the light parent package
    root = Path(list(spec.submodule_search_locations)[0])
    catalog = {}
    for f in sorted(root.glob("*.py")):
        src = f.read_text()
        trailing, block = {}, {}
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                text = tok.string.lstrip("#").strip()
                (block if tok.line.strip().startswith("#") else trailing)[tok.start[0]] = text
        classes = {n.name: n for n in ast.parse(src).body if isinstance(n, ast.ClassDef)}
        for cls in classes.values():
            attrs = {t.id: st.value for st in cls.body if isinstance(st, ast.Assign) for t in st.targets
                     if isinstance(t, ast.Name)}
            if "name" not in attrs or not isinstance(attrs.get("Config"), ast.Name):
                continue
            cfg = classes.get(attrs["Config"].id)
            fields = {}
            for st in cfg.body if cfg is not None else ():
                if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                    line, above = st.lineno, []
                    while line - 1 - len(above) in block:
                        above.insert(0, block[line - 1 - len(above)])
                    doc = trailing.get(line) or " ".join(above)
                    fields[st.target.id] = (ast.get_source_segment(src, st.value), doc)
            catalog[ast.literal_eval(attrs["name"])] = fields
    return catalog


def option_help(option: str) -> str:
    """What ``--<option>`` does for each method that has it, with that method's default."""
    parts = [f"{m}: {fields[option][1] or 'see the method config'} (default {fields[option][0]})"
             for m, fields in sorted(method_catalog().items()) if option in fields]
    return "; ".join(parts).replace("%", "%%") if parts else "method option"  # argparse formats help with %


def _parse_option(text: str) -> tuple[str, object]:
    from interference.methods import MethodError
    key, sep, value = text.partition("=")
    if not sep:
        raise MethodError(f"--option {text!r} is not KEY=VALUE.")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def build_config(args) -> "FinetuneConfig":
    from interference.bases import BaseSpec
    from interference.real_data import resolve_model_and_data
    from interference.sft_data import SFTDataConfig
    from interference.train import FinetuneConfig
    from interference.world import WorldConfig

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
        from interference.train import QUICK_CLI
        preset = QUICK_CLI if args.steps is None else {}  # with --steps the preset's length is moot: configs keep their hash
        kw = {**FinetuneConfig.quick().to_dict(), **preset, **kw}
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


def build_parser() -> Parser:
    """The command line (torch-free, so ``--help`` is fast)."""
    ap = Parser(prog="python -m interference.finetune", description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, help=f"fine-tuning method: one of {', '.join(sorted(method_catalog()))}")
    ap.add_argument("--out", required=True, type=out_dir, help="run directory")
    ap.add_argument("--unknown-fraction", type=finite_float, default=0.5, help="share of Unknown facts in the SFT set")
    ap.add_argument("--n-facts", type=int, help="SFT set size (default: the data config's)")
    ap.add_argument("--n-task", type=int, help="held-out Known facts for task learning")
    ap.add_argument("--n-stability", type=int, help="held-out HighlyKnown facts for stability")
    ap.add_argument("--data-seed", type=seed_int, help="one seed value: which facts are drawn (default 0)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny world and model, a run that learns the new facts and forgets some (seconds)")
    ap.add_argument("--world", help="world config JSON (as written by WorldConfig.save)")
    ap.add_argument("--base-dir", help="a pre-training run directory to fine-tune instead of the cached base")
    add_seed(ap, "data order and model-side randomness of this run")
    ap.add_argument("--steps", type=int, help="optimizer steps (overrides --epochs)")
    d = RUN_DEFAULTS
    ap.add_argument("--epochs", type=int, help=f"passes over the SFT set (default {d['epochs']}; --quick: its preset)")
    ap.add_argument("--lr", type=finite_float, help=f"peak learning rate (default {d['lr']:g}; --quick: its preset)")
    ap.add_argument("--batch-size", type=int, help=f"global batch (default {d['batch_size']}; --quick: its preset)")
    ap.add_argument("--eval-every", type=int,
                    help=f"evaluate the three sets every N updates (default {d['eval_every']}; --quick: its preset)")
    ap.add_argument("--grad-accum", type=int, help="micro-batches per update (the global batch stays --batch-size)")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"],
                    help="auto (default): bf16 autocast on a GPU that has it, else fp32; fp16: float16 autocast "
                         "with a loss scaler (CUDA only, for GPUs without bfloat16)")
    ap.add_argument("--strategy", choices=["ddp", "fsdp"],
                    help="under accelerate launch: ddp (default) replicates the model; fsdp shards it with FSDP2 "
                         "(sft and self_distill; see docs/REAL_MODELS.md)")
    ap.add_argument("--report-to", action="append", choices=["tensorboard", "wandb", "mlflow", "none"],
                    help="also log loss, per-set accuracy and forgetting counts at each evaluation to this "
                         "tracker (repeatable; TensorBoard event files go to OUT/tensorboard); off by default")
    ap.add_argument("--exclude", metavar="FILE", help="JSON list of SFT fact ids to drop (e.g. the forecast's exclude.json)")
    ap.add_argument("--replay-facts", metavar="FILE",
                    help="JSON list of known fact ids to add to the SFT set (e.g. the forecast's replay.json)")
    add_common(ap)
    add_resume(ap)
    g = ap.add_argument_group("method options (each applies to the methods named in its help)")
    for flag, typ in METHOD_FLAGS.items():
        g.add_argument("--" + flag.replace("_", "-"), type=typ, help=option_help(flag))
    g.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="any other method option")
    add_real_arguments(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:  # DataError and DistributedError are ValueErrors: run_main makes them one sentence
        from interference.threads import configure_threads
        from interference.train import finetune
        configure_threads(args.device)
        cfg = build_config(args)
        callbacks = trackers(args.report_to or [], args.out)
        rec = finetune(cfg, args.out, callbacks=callbacks, progress=not args.no_progress, device=args.device,
                       resume=True)
        print(format_summary(rec.metrics, args.out))
        return 0
    return run_main(body, resume_hint="run the same command again to continue from the last checkpoint")


def trackers(names: list[str], out: str) -> list:
    """The tracking callbacks ``--report-to`` asks for (``interference.tracking``)."""
    names = [n for n in dict.fromkeys(names) if n != "none"]
    if not names:
        return []
    from interference.tracking import make_tracker
    return [make_tracker(n, Path(out)) for n in names]


def format_summary(m: dict, out) -> str:
    def f(k):
        return f"{m[k]['final']:.3f} (peak {m[k]['peak']:.3f})"
    return (f"run: {out}\n  task {f('task_accuracy')}   new facts {f('plasticity_accuracy')}   "
            f"held-out known {f('stability_accuracy')}   base {m['stability_accuracy_base']['final']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
