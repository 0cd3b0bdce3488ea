"""The one fine-tuning loop, shared by every method.

AdamW, linear warm-up + cosine decay, gradient clipping, fixed seeds, evaluation every
``eval_every`` steps into a per-fact timeline, checkpoints every ``ckpt_every`` steps, resume.
A method (``interference.methods``) only says which parameters train and what loss a batch gets.

Run directory (docs/CONTRACTS.md): ``config.json``, ``metrics.json``, ``timeline.jsonl`` (one row
per fact per evaluation; step 0 is before any update), ``sft_data.json`` (which facts went where),
``checkpoints/`` (latest only, removed at the end), ``model/`` (final weights, loadable with
``interference.models.load_model``).

Callbacks are objects with any of ``on_start(ctx)``, ``on_eval(ctx, step)``, ``on_end(ctx)``;
``ctx`` is a ``RunContext`` (model, base_model, tokenizer, world, data, out, step, last_eval,
timeline). They run in the training process, after the evaluation at that step, and must not
change the model. ``on_eval`` runs at every evaluation, including step 0; a resumed run calls it
only for evaluations it performs itself.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from interference.batching import pack
from interference.evaluate import score_facts
from interference.checkpoint import has_checkpoint, load_checkpoint, mark_jsonl, restore_jsonl, save_checkpoint
from interference.io import (RunDirError, atomic_write_json, check_fields, check_finite, check_not_busy, claim_run_dir,
                             finished_run, release_run_dir, seal_run_dir, verify_run_dir)
from interference.methods import get_method
from interference.methods.base import Method, RunContext
from interference.models import ModelError, load_model, model_logits, resolve_device, save_model
from interference.pretrain import BASE_FILES, BaseSpec, base_model, load_slick
from interference.sft_data import EVAL_SETS, SFTDataConfig, build_sft_data
from interference.world import World, WorldConfig


@dataclass
class FinetuneConfig:
    base: dict = field(default_factory=lambda: BaseSpec.default().to_dict())  # BaseSpec.to_dict()
    base_dir: str | None = None  # a pre-training run dir instead of `base` (its config.json says the spec)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    method: str = "sft"
    method_options: dict = field(default_factory=dict)
    epochs: int = 40  # CALIBRATION: ~40 epochs of 400 facts at lr 3e-4 learn every new fact
    steps: int | None = None  # overrides epochs when set
    lr: float = 3e-4  # at 1e-3 even Known-only SFT forgot 13% (CALIBRATION); 3e-4 keeps that control clean
    batch_size: int = 32
    warmup_frac: float = 0.05
    min_lr_ratio: float = 0.1  # cosine decays to 10% of lr
    weight_decay: float = 0.0  # decay towards zero is itself a forgetting force; keep it out of the comparison
    grad_clip: float = 1.0
    seed: int = 0  # model-side seed: data order (the SFT facts are drawn by data.seed)
    eval_every: int = 50
    ckpt_every: int = 200
    new_entities: dict | None = None  # kwargs for world.new_entities(...) when data.unknown_source == "new"

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = SFTDataConfig.from_dict(self.data)
        # JSON-normal form (tuples -> lists) so a config equals itself after a round trip
        self.base = json.loads(json.dumps(self.base))
        # Resolve the method's options with their defaults: a run's config then says exactly what
        # trained it, and changing a method default can never make a stale cached run look current.
        self.method_options = json.loads(json.dumps(
            get_method(self.method, **self.method_options).config.to_dict()))
        check_finite(self.to_dict(), ValueError, "fine-tune setting")
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 1 or (self.steps is not None and self.steps < 1):
            raise ValueError("lr, batch_size, epochs and steps must be positive.")
        if self.eval_every < 1 or self.ckpt_every < 1:
            raise ValueError("eval_every and ckpt_every must be positive step counts.")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac {self.warmup_frac} must be in [0, 1).")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data"] = self.data.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        return cls(**check_fields(cls, d, ValueError, "fine-tune config"))

    @classmethod
    def quick(cls, **kw) -> "FinetuneConfig":
        """Tiny world, tiny model, few steps: for tests and smoke runs."""
        base = {"base": BaseSpec.default(quick=True).to_dict(), "data": SFTDataConfig.quick(), "epochs": 5,
                "eval_every": 5, "ckpt_every": 10}
        return cls(**{**base, **kw})


@dataclass
class RunRecord:
    out: Path
    config: FinetuneConfig
    metrics: dict

    def timeline(self) -> list[dict]:
        return [json.loads(line) for line in (self.out / TIMELINE).read_text().splitlines() if line]

    def load_model(self, device=None):
        """The fine-tuned model: (model, ModelConfig, tokenizer)."""
        return load_model(self.out / "model", device=device)

    def world_and_data(self):
        """(World, SFTData) of this run, rebuilt deterministically from its config."""
        base_dir = base_dir_of(self.config)
        world = World(WorldConfig.from_dict(json.loads((base_dir / "config.json").read_text())["world"]))
        new = world.new_entities(**self.config.new_entities) if self.config.new_entities else None
        return world, build_sft_data(world, load_slick(base_dir), self.config.data, new_entities=new)


def base_dir_of(cfg: "FinetuneConfig") -> Path:
    """Where the config's base model lives (the cache entry when no base_dir is given)."""
    from interference.pretrain import cache_root
    return Path(cfg.base_dir) if cfg.base_dir else cache_root() / f"base-{BaseSpec.from_dict(cfg.base).hash()}"


TIMELINE = "timeline.jsonl"
CKPT = "checkpoints"
RUN_FILES = ("config.json", "metrics.json", TIMELINE, "sft_data.json", "model")  # sealed when finished


def load_run(out: str | Path) -> RunRecord:
    out = Path(out)
    if not (out / "metrics.json").exists():
        raise RunDirError(f"{out} holds no finished fine-tuning run (no metrics.json).")
    why = verify_run_dir(out, RUN_FILES)
    if why:
        raise RunDirError(f"the fine-tuning run in {out} is damaged ({why}); re-run the command that made it "
                          "to compute it again.")
    cfg = FinetuneConfig.from_dict(json.loads((out / "config.json").read_text()))
    return RunRecord(out, cfg, json.loads((out / "metrics.json").read_text()))


# ------------------------------------------------------------------ pieces of the loop
def lr_multiplier(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up then cosine decay to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """The batches of one epoch: a pure function of (seed, epoch), so a resumed run replays them."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return [perm[i: i + batch_size] for i in range(0, n, batch_size)]


def batch_at(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    per_epoch = math.ceil(n / batch_size)
    epoch, k = divmod(step, per_epoch)
    return epoch_batches(n, batch_size, seed, epoch)[k]


def sft_steps(model, tokenizer, facts, *, lr: float, batch_size: int, epochs: int, seed: int) -> None:
    """Plain constant-lr SFT for a few epochs (used to make the format teacher)."""
    dev = next(model.parameters()).device
    data = pack(tokenizer, [(f.prompt, f.answer) for f in facts], int(model.cfg.n_ctx)).to(dev)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    method = Method()
    model.train()
    for epoch in range(epochs):
        for idx in epoch_batches(len(data), batch_size, seed, epoch):
            batch = data.subset(idx.to(dev))
            loss, _ = method.loss(model, batch, model_logits(model, batch.ids), None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def evaluate_sets(model, tokenizer, data, step: int) -> tuple[dict[str, float], list[dict]]:
    """Accuracy per evaluation set and the timeline rows of this evaluation."""
    accs, rows = {}, []
    for name in EVAL_SETS:
        facts = data.eval_sets[name]
        res = score_facts(model, tokenizer, facts) if facts else []
        accs[name] = sum(r.correct for r in res) / len(res) if res else float("nan")
        rows.extend({"step": step, "fact_id": r.fact_id, "set": name, "outcome": r.outcome, "correct": r.correct,
                     "gold_logprob": round(r.gold_logprob, 5), "prediction": r.prediction} for r in res)
    return accs, rows


def _append_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
        fh.flush()


def resolve_base(cfg: FinetuneConfig, device=None, progress: bool = False):
    """(model, ModelConfig, tokenizer, world, base_dir) for the config's base model."""
    if cfg.base_dir:
        base_dir = Path(cfg.base_dir)
        why = "it holds no config.json" if not (base_dir / "config.json").exists() else verify_run_dir(base_dir, BASE_FILES)
        if why:
            raise ModelError(f"{base_dir} is not a finished pre-training run ({why}); pass a directory written by "
                             "`python -m interference.pretrain --out DIR`.")
        world = World(WorldConfig.from_dict(json.loads((base_dir / "config.json").read_text())["world"]))
        model, mcfg, tok = load_model(base_dir, device=device)
        return model, mcfg, tok, world, base_dir
    spec = BaseSpec.from_dict(cfg.base)
    model, tok, world, base_dir = base_model(spec, device=device, progress=progress)
    return model, spec.model, tok, world, Path(base_dir)


def _metrics(history: list[dict], base_stability: float) -> dict:
    """final and peak per set; peak is over evaluations after step 0 (step 0 is the base itself,
    which would make the peak of stability trivially the base's accuracy)."""
    m: dict[str, Any] = {}
    trained = [h for h in history if h["step"] > 0] or history
    for name in EVAL_SETS:
        vals = [h[name] for h in trained if not math.isnan(h[name])]
        m[f"{name}_accuracy"] = {"final": history[-1][name], "peak": max(vals) if vals else float("nan")}
    m["stability_accuracy_base"] = {"final": base_stability, "peak": base_stability}
    m["history"] = history
    return m


def _call(callbacks: Sequence, hook: str, *args) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(*args)


# ------------------------------------------------------------------ the loop
def finetune(cfg: FinetuneConfig, out: str | Path, callbacks: Sequence = (), progress: bool = True,
             device: str | None = None, resume: bool = True) -> RunRecord:
    """Fine-tune the base model with ``cfg.method`` into ``out`` and return the run record.

    A finished run with the same config is returned without retraining; an interrupted one
    resumes from its latest checkpoint (``resume=False`` refuses instead).
    """
    out = Path(out)
    cfg_dict = cfg.to_dict()
    check_not_busy(out)
    if finished_run(out, cfg_dict, RUN_FILES, "fine-tuning run"):
        return load_run(out)
    if not resume and has_checkpoint(out / CKPT):
        raise RunDirError(f"{out} holds an interrupted run of this config; resume it (--resume) or choose another --out.")
    dev = resolve_device(device)
    method = get_method(cfg.method, **cfg.method_options)
    model, mcfg, tok, world, base_dir = resolve_base(cfg, device=dev, progress=progress)
    new_ents = world.new_entities(**cfg.new_entities) if cfg.new_entities else None
    data = build_sft_data(world, load_slick(base_dir), cfg.data, new_entities=new_ents)
    torch.manual_seed(cfg.seed)
    base = copy.deepcopy(model).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    ctx = RunContext(model=model, base_model=base, tokenizer=tok, world=world, data=data, out=out, config=cfg,
                     base_dir=base_dir, device=dev)
    model = ctx.model = method.prepare(model, ctx)
    params = method.trainable_parameters(model)  # validates e.g. freeze layer ranges against the model
    claim_run_dir(out, cfg_dict, what="fine-tuning run")  # after every check that can fail on input
    atomic_write_json(out / "sft_data.json", data.to_dict())
    method.setup(ctx)
    chosen = {id(p) for _, p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)

    train = pack(tok, [(f.prompt, f.answer) for f in data.train], mcfg.n_ctx).to(dev)
    per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.steps if cfg.steps is not None else cfg.epochs * per_epoch
    warmup = int(cfg.warmup_frac * total)
    opt = torch.optim.AdamW([p for _, p in params], lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, total, warmup, cfg.min_lr_ratio))

    timeline = out / TIMELINE
    resumed = load_checkpoint(out / CKPT, model, opt, sched) if resume else None
    if resumed:
        start, extra = resumed
        history = list(extra["history"])  # rows written after the checkpoint are dropped:
        restore_jsonl(timeline, extra.get("timeline", extra.get("timeline_offset")), f"{out} (step {start})")
    else:
        start, history = 0, []
        timeline.write_text("")
    ctx.step = start
    _call(callbacks, "on_start", ctx)

    def do_eval(step: int, loss: float | None) -> None:
        accs, rows = evaluate_sets(model, tok, data, step)
        _append_rows(timeline, rows)
        history.append({"step": step, "loss": loss, **accs})
        ctx.step, ctx.last_eval, ctx.timeline = step, accs, rows
        bar.set_postfix(loss=f"{loss if loss is not None else float('nan'):.3f}", task=f"{accs['task']:.2f}",
                        plast=f"{accs['plasticity']:.2f}", stab=f"{accs['stability']:.2f}")
        _call(callbacks, "on_eval", ctx, step)

    bar = tqdm(total=total, initial=start, desc=f"finetune[{cfg.method}]", disable=not progress, dynamic_ncols=True)
    if start == 0:
        do_eval(0, None)
    model.train()
    for step in range(start, total):
        batch = train.subset(batch_at(step, len(train), cfg.batch_size, cfg.seed).to(dev))
        ctx.step = step
        logits = model_logits(model, batch.ids)
        loss, logs = method.loss(model, batch, logits, ctx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], cfg.grad_clip)
        opt.step()
        sched.step()
        bar.update(1)
        done = step + 1
        if done % cfg.eval_every == 0 or done == total:
            do_eval(done, float(loss.detach()))
            model.train()
        if done % cfg.ckpt_every == 0 and done < total:
            save_checkpoint(out / CKPT, model, opt, sched, done,
                            {"history": history, "timeline": mark_jsonl(timeline)})
    bar.close()

    ctx.step = total
    final = method.finalize(model)
    save_model(final, mcfg, tok, out / "model")
    metrics = _metrics(history, history[0]["stability"])
    metrics.update({"steps": total, "method": cfg.method, "n_train": len(data.train),
                    "n_trainable": sum(p.numel() for _, p in params), "device": str(dev)})
    atomic_write_json(out / "metrics.json", metrics)
    shutil.rmtree(out / CKPT, ignore_errors=True)
    seal_run_dir(out, RUN_FILES)
    release_run_dir(out)
    _call(callbacks, "on_end", ctx)
    return RunRecord(out, cfg, metrics)
