"""Pre-train the base model on the synthetic world, so that "pre-existing knowledge" is real.

The recipe: statements (several paraphrases) for every ``pretrain_qa`` and ``statement_only``
entity, QA only for ``pretrain_qa`` ones. The QA format must then *generalise* to facts seen only
as statements; those statement-only facts are the knowledge later fine-tuning can destroy.
Format generalisation arrives only well past memorisation, so the run length is a criterion that
scales with the world (``interference.consolidation``): train until the statements are memorised
(step m), then ``consolidation * m`` steps more with a cosine decay. The memorised state is
cached, so bases at several consolidation levels share their first m steps. The corpus also
holds the world's filler lines (uuid pieces in a non-name role, ``World.filler_pairs``).

    python -m interference.pretrain --out runs/base            # default world, ~5 min on 2 cores
    python -m interference.pretrain --quick --out runs/tiny    # tiny world, seconds
    python -m interference.pretrain --world world.json --out DIR

Runs are cached by a hash of (world, model, pretrain) configs, checkpointed every
``ckpt_every`` steps and resume after interruption with identical results.
"""
from __future__ import annotations

if __name__ == "__main__":  # answer --help and bad flags before torch loads (interference.pretrain_cli)
    from interference.cli import early_parse
    from interference.pretrain_cli import build_parser
    early_parse(build_parser)

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

from interference.batching import Packed, answer_token_accuracy, pack
from interference.callbacks import Checkpoints
from interference.checkpoint import clear_checkpoints, has_checkpoint
from interference.consolidation import ConsolidationRule, FromMemorised, UntilMemorised, memorised_state
from interference.evaluate import SLICK_CATEGORIES, accuracy, category_counts, score_facts, slick_categorize
from interference.io import (atomic_write_json, atomic_write_text, claim_run_dir, finished_run, json_line, real_out,
                             release_run_dir, seal_run_dir)
from interference.loop import LoopConfig, train_loop
from interference.models import build_model, load_model, model_logits, resolve_device, save_model
from interference.threads import configure_threads
from interference.tokenizer import world_tokenizer
from interference.bases import (FINGERPRINT_FILE, RUN_FILES, SLICK_FILE, BaseSpec, PretrainConfig, base_dir,
                                base_fingerprint, cache_root, install_pinned, pin_base, pinned_fingerprint,
                                write_fingerprint)
from interference.corpus import pretraining_pairs, qa_pairs, statement_pairs
from interference.world import World, WorldConfig


# Under the criterion (memorise_epochs None) the memorisation phase stops under a 20,000-step cap; its bar counts to
# this many epochs of the corpus instead (and grows if a run needs more). Measured: the default
# world (140.6 steps per epoch) memorised at step 1,250 on a re-train and at 2,250 for the cached
# base (9 and 16 epochs), the quick world at step 300 of 31.7 per epoch (9.5). Only the bar reads it.
MEMORISE_EPOCHS_EXPECTED = 12


@torch.no_grad()
def _probe_acc(model, data: Packed, n: int = 512) -> float:
    sub = data.subset(torch.arange(min(n, len(data))))
    return float(answer_token_accuracy(model_logits(model, sub.ids), sub).float().mean())


def phase_loop_config(cfg: PretrainConfig, phase: str, rule: ConsolidationRule | None = None) -> LoopConfig:
    """Loop settings of one pre-training phase. The schedule is the loop's own warm-up + cosine
    (``loop.lr_multiplier``, the package's one schedule), cut in two so that its decay can start at
    a step known only at run time: "memorise" warms up and then holds the peak (a cosine down to a
    floor of 1) until the rule finds m; "consolidate" resumes at m and decays from the peak to
    ``min_lr_ratio`` over the ``consolidation * m`` steps after it (its "warm-up" of m steps was
    already run by phase 1). "fixed" is the old fixed-length recipe (``consolidation`` None)."""
    if phase == "fixed":
        steps, warmup, floor = cfg.steps, cfg.warmup, cfg.min_lr_ratio
    elif phase == "memorise":
        steps, warmup, floor = cfg.memorise_cap, cfg.warmup, 1.0
    elif phase == "consolidate" and rule is not None and rule.total_steps is not None:
        steps, warmup, floor = rule.total_steps, rule.memorised_step, cfg.min_lr_ratio
    else:
        raise ValueError(f"phase {phase!r} is not fixed, memorise, or consolidate with a rule that has found m.")
    return LoopConfig.from_settings(cfg, steps=steps, warmup_steps=warmup, min_lr_ratio=floor)


def pretrain(spec: BaseSpec, out: str | Path, device: str | None = None, progress: bool = True,
             recreate: bool = False) -> dict:
    """Train (or resume, or reuse) the base model described by ``spec`` into ``out``; return metrics.

    A spec the repository pins (``bases.pinned_dir``) is installed from the committed copy instead
    of trained, unless ``recreate``: then it is trained here like any other."""
    out = real_out(out)
    full_cfg = {**spec.to_dict(), "hash": spec.hash()}
    if finished_run(out, full_cfg, RUN_FILES, "pre-training run"):
        return json.loads((out / "metrics.json").read_text())
    if not recreate and install_pinned(spec, out) and finished_run(out, full_cfg, RUN_FILES, "pre-training run"):
        return json.loads((out / "metrics.json").read_text())
    dev = resolve_device(device)
    world = World(spec.world)
    tok = world_tokenizer(world)
    cfg = spec.pretrain
    # the corpus is packed before the directory is claimed: an example longer than the model's
    # context is refused with nothing created
    statements = pack(tok, pretraining_pairs(world), spec.model.n_ctx)
    qa = pack(tok, qa_pairs(world, "pretrain_qa"), spec.model.n_ctx)
    # a cache entry is shared: wait for another process pre-training it, then reuse its result
    claim_run_dir(out, full_cfg, what="pre-training run", wait=out.resolve().parent == cache_root().resolve())
    if finished_run(out, full_cfg, RUN_FILES, "pre-training run", quiet=True):
        release_run_dir(out)
        return json.loads((out / "metrics.json").read_text())

    torch.manual_seed(cfg.seed)
    model = build_model(spec.model, len(tok), tokenizer=tok, device=dev)

    corpus = Packed.cat([statements] + [qa] * cfg.qa_weight, tok.pad_token_id) if len(qa) else statements
    corpus = corpus.to(dev)
    statements = pack(tok, statement_pairs(world), spec.model.n_ctx)  # the memorisation probe: no filler
    probe_sets = {
        "statement": statements.subset(torch.randperm(len(statements), generator=torch.Generator().manual_seed(0))).to(dev),
        "known_qa": pack(tok, qa_pairs(world, "statement_only", 0), spec.model.n_ctx).to(dev)
        if spec.world.n_statement_only else None,
    }

    history: list[dict] = []

    class Probe:
        """Memorisation and format-generalisation probes into ``history`` at each evaluation."""

        def on_eval(self, state) -> None:
            if state.step == 0:
                return
            row = {"step": state.step, "loss": state.loss}
            row.update({f"{k}_acc": _probe_acc(model, v) for k, v in probe_sets.items() if v is not None})
            history.append(row)
            state.postfix.update(loss=f"{row['loss']:.3f}", stmt=f"{row['statement_acc']:.2f}",
                                 known_qa=f"{row.get('known_qa_acc', float('nan')):.2f}")

    def checkpoints(root: Path) -> Checkpoints:
        return Checkpoints(root, cfg.ckpt_every, extra=lambda: {"history": history},
                           restore=lambda extra: history.extend(extra["history"]))

    t0 = time.time()
    rule, resumed_from_memorised = None, False
    if cfg.consolidation is None:  # the fixed-length recipe: warm-up, cosine over cfg.steps
        train_loop(model, model.parameters(), corpus, phase_loop_config(cfg, "fixed"),
                   callbacks=[checkpoints(out / "checkpoint"), Probe()], progress=progress, desc="pretrain",
                   group_lengths=True)
    else:
        rule = ConsolidationRule(cfg.consolidation, cfg.memorised_at, cfg.memorise_cap,
                                 fixed_step=cfg.memorise_steps(len(corpus)))
        memo = cache_root() / f"memorised-{spec.phase1_hash()}"
        if not has_checkpoint(memo / "checkpoint"):
            # phase 1: warm-up, then the peak rate (a cosine to a floor of 1) until memorised
            train_loop(model, model.parameters(), corpus, phase_loop_config(cfg, "memorise"),
                       callbacks=[checkpoints(out / "checkpoint_memorise"), Probe(),
                                  UntilMemorised(rule, lambda: _probe_acc(model, probe_sets["statement"]),
                                                 cfg.check_every, memo, lambda: {"history": history})],
                       progress=progress, desc="pretrain (memorise)", group_lengths=True,
                       expected_steps=rule.fixed_step or math.ceil(MEMORISE_EPOCHS_EXPECTED * len(corpus) / cfg.batch_size))
        else:
            resumed_from_memorised = True
        rule.load(memorised_state(memo))
        # phase 2: consolidation * m more steps, cosine from the peak rate down to the floor
        del history[:]
        train_loop(model, model.parameters(), corpus,
                   phase_loop_config(cfg, "consolidate", rule),
                   callbacks=[checkpoints(out / "checkpoint"), FromMemorised(memo / "checkpoint", history), Probe()],
                   progress=progress, desc="pretrain (consolidate)", group_lengths=True)
        clear_checkpoints(out / "checkpoint_memorise")
    train_seconds = time.time() - t0

    save_model(model, spec.model, tok, out)
    write_fingerprint(out, model)
    metrics, slick_rows = evaluate_base(model, tok, world, cfg)
    atomic_write_text(out / SLICK_FILE, "".join(json_line(r) for r in slick_rows))
    if rule is not None:
        metrics["consolidation"] = {"memorised_step": rule.memorised_step, "memorised": rule.memorised,
                                    "consolidation": cfg.consolidation, "steps_after": rule.decay_steps,
                                    "resumed_from_memorised": resumed_from_memorised}
    metrics.update({"train_seconds": round(train_seconds, 1),
                    "steps": cfg.steps if rule is None else rule.total_steps, "history": history,
                    "fingerprint": base_fingerprint(out), "torch_threads": torch.get_num_threads(),
                    "device": str(dev), "n_params": sum(p.numel() for p in model.parameters())})
    atomic_write_json(out / "metrics.json", metrics)
    _clear_checkpoint(out)
    seal_run_dir(out, RUN_FILES + (FINGERPRINT_FILE,))
    release_run_dir(out)
    return metrics


def evaluate_base(model, tok, world: World, cfg: PretrainConfig) -> tuple[dict, list[dict]]:
    """The knowledge report: QA accuracy per split, and a SliCK category row for every fact."""
    variants_by_split = {s: [world.facts(world.split(s), template=t) for t in range(world.config.n_qa_templates)]
                         for s in ("pretrain_qa", "statement_only", "unseen") if world.split(s)}
    m: dict = {"chance": 1.0 / world.config.n_values}
    slick_rows = []
    for split, variants in variants_by_split.items():
        res = score_facts(model, tok, variants[0])
        key = {"pretrain_qa": "pretrain_qa_accuracy", "statement_only": "known_qa_accuracy",
               "unseen": "unseen_qa_accuracy"}[split]
        m[key] = accuracy(res)
        cats = slick_categorize(model, tok, variants, cfg.slick_samples, cfg.slick_temperature, seed=cfg.seed)
        m.setdefault("slick", {})[split] = category_counts(cats)
        slick_rows.extend({**c.to_dict(), "split": split} for c in cats)
    m["slick_total"] = {c: sum(v[c] for v in m["slick"].values()) for c in SLICK_CATEGORIES}
    m["n_facts"] = len(slick_rows)
    return m, slick_rows


def _clear_checkpoint(out: Path) -> None:
    clear_checkpoints(out / "checkpoint")


def base_model(spec: BaseSpec, device: str | None = None, progress: bool = True):
    """The cached base model for ``spec`` (trained on first use). Returns (model, tokenizer, world, dir)."""
    out = base_dir(spec)
    pretrain(spec, out, device=device, progress=progress)
    base_fingerprint(out)  # recorded for bases cached before fingerprints existed
    model, _, tok = load_model(out, device=device)
    return model, tok, World(spec.world), out


def consolidation_help() -> str:
    """The --consolidation help, its default read from the specs main() starts from (so the two
    cannot disagree, as a hand-typed "default 2" once did). A spec may use the fixed-length recipe
    (consolidation None); the help then says so instead of failing to format."""
    def shown(spec: BaseSpec) -> str:
        c = spec.pretrain.consolidation
        return f"{c:g}" if c is not None else f"none: a fixed {spec.pretrain.steps} steps"

    full, quick = (shown(BaseSpec.default(quick=q)) for q in (False, True))
    default = full if full == quick else f"{full}; with --quick {quick}"
    return f"steps after memorisation, as a multiple of the memorisation step (default {default})"


def main(argv: list[str] | None = None) -> int:
    from interference.cli import run_main
    from interference.pretrain_cli import build_parser
    ap = build_parser()
    args = ap.parse_args(argv)

    def body() -> int:
        configure_threads(args.device)
        spec = BaseSpec.default(quick=args.quick)
        if args.world:
            spec = dataclasses.replace(spec, world=WorldConfig.load(args.world))
        if args.steps is not None and args.consolidation is not None:
            raise ValueError("--steps (a fixed length) and --consolidation (a criterion) exclude each other; pass one.")
        if args.consolidation is not None:
            if args.consolidation < 0:
                raise ValueError(f"--consolidation {args.consolidation} must be >= 0.")
            spec = spec.with_consolidation(args.consolidation)
        if args.steps is not None:
            spec = spec.with_consolidation(None)
        if args.steps is not None or args.seed is not None:
            p = spec.pretrain
            spec = dataclasses.replace(spec, pretrain=dataclasses.replace(
                p, steps=args.steps if args.steps is not None else p.steps, seed=args.seed if args.seed is not None else p.seed),
                model=dataclasses.replace(spec.model, seed=args.seed if args.seed is not None else spec.model.seed))
        if args.width is not None:
            if args.width < 1 or args.width % spec.model.n_heads:
                raise ValueError(f"--width {args.width} must be a positive multiple of the {spec.model.n_heads} heads.")
            spec = spec.with_width(args.width)
        pinned = pinned_fingerprint(spec)
        if args.pin and args.recreate:
            raise ValueError("--pin commits a new base and --recreate re-trains a pinned one; pass one of them.")
        if args.pin and pinned is not None:
            raise ValueError(f"--pin commits a base the repository does not pin yet, and spec {spec.hash()} is "
                             "pinned already; drop --pin.")
        if args.recreate and pinned is None:
            raise ValueError(f"--recreate re-trains a base the repository pins, and none is pinned for this spec "
                             f"({spec.hash()}); drop --recreate to pre-train it.")
        out = Path(args.out) if args.out else (cache_root() / f"recreated-{spec.hash()}" if args.recreate
                                               else base_dir(spec))
        metrics = pretrain(spec, out, device=args.device, progress=not args.no_progress, recreate=args.recreate)
        print(format_report(metrics, out))
        print(pinned_line(spec, out, pinned, args.recreate))
        if args.pin:
            dest = pin_base(spec, out)
            print(f"  pinned as {dest} (weights {base_fingerprint(dest)}); commit it, then run "
                  "`python scripts/pin_teachers.py` for its format teacher.")
        return 0
    return run_main(body)


def pinned_line(spec: BaseSpec, out: Path, pinned: str | None, recreated: bool) -> str:
    """Which weights this is: the committed ones, a re-creation compared with them, or an unpinned base."""
    fp = base_fingerprint(out)
    if pinned is None:
        return f"  weights {fp} (spec {spec.hash()}; not a base the repository pins)"
    if not recreated:
        return f"  weights {fp}: the base the repository pins for spec {spec.hash()} (interference/pinned)"
    if fp == pinned:
        return f"  re-created weights {fp}: identical to the pinned base; this machine reproduces it bit for bit."
    return (f"  re-created weights {fp} differ from the pinned base's {pinned} (spec {spec.hash()}): this CPU's "
            "float reduction order moved the training. Every command keeps using the pinned base; compare the "
            "knowledge report above with the pinned one (`python -m interference.pretrain`) to see by how much.")


def format_report(m: dict, out: Path) -> str:
    lines = [f"base model: {out}",
             f"  QA accuracy  pretrain_qa {m.get('pretrain_qa_accuracy', float('nan')):.3f}   "
             f"statement-only (known) {m.get('known_qa_accuracy', float('nan')):.3f}   "
             f"unseen {m.get('unseen_qa_accuracy', float('nan')):.3f}   (chance {m['chance']:.3f})",
             "  SliCK categories: " + "  ".join(f"{s}: " + ", ".join(f"{c} {n}" for c, n in v.items())
                                                for s, v in m.get("slick", {}).items())]
    if "train_seconds" in m:
        lines.append(f"  trained {m['steps']} steps in {m['train_seconds']:.0f}s on {m.get('device')}")
    if "consolidation" in m:
        c = m["consolidation"]
        lines.append(f"  memorisation phase ended at step {c['memorised_step']}"
                     + (", statements memorised" if c["memorised"] else
                        " with the statements NOT memorised (accuracy below the mark)")
                     + f", then {c['steps_after']} steps ({c['consolidation']} x m)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
