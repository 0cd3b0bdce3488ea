"""Fine-tuning runs: one method on the SFT set of a base model, into a run directory.

The updates go through the one loop (``interference.loop``: AdamW, linear warm-up + cosine decay,
gradient clipping, epoch-permutation batches); this module adds what a fine-tuning *run* is:
the SFT data, the method (``interference.methods``: which parameters train, what loss a batch
gets), the stages it needs (``interference.teacher``: the format teacher, cached beside the base),
evaluation every ``eval_every`` steps into a per-fact timeline, checkpoints every ``ckpt_every``
steps, resume.

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

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from interference.batching import answer_token_accuracy, pack
from interference.callbacks import Checkpoints, Snapshots, WhenLearned
from interference.evaluate import score_facts
from interference.data import Fact
from interference.checkpoint import clear_checkpoints, has_checkpoint, mark_jsonl, restore_jsonl
from interference.io import (RunDirError, atomic_write_json, check_fields, check_finite, check_not_busy, claim_run_dir,
                             finished_run, json_line, number, real_out, release_run_dir, seal_run_dir, verify_run_dir)
from interference.loop import LoopConfig, steps_for_epochs, train_loop
from interference.methods import get_method
from interference.methods.base import RunContext
from interference.models import ModelError, clone_model, load_model, model_device, model_logits, save_model
from interference.bases import BASE_FILES, BaseSpec, base_dir, base_fingerprint, base_world, load_slick
from interference.pretrain import base_model
from interference.teacher import TeacherRecipe, provide_stages
from interference.sft_data import EVAL_SETS, SFTData, SFTDataConfig, SFTDataError, build_sft_data, curate
from interference.world import World


# Fields added after runs were cached, with the default that reproduces the older runs.
NEW_DEFAULTS = {"strategy": "ddp", "exclude": None, "replay_facts": None}


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
    real: dict | None = None  # real_data.RealSpec.to_dict(): a HF model + QA data instead of `base`
    # Scale-out (interference.distributed): batch_size is the global batch whatever the number of
    # processes; grad_accum cuts each process's share into micro-batches; precision "auto" is bf16
    # autocast on a GPU that has it, fp32 elsewhere. world_size is recorded by finetune(), not set.
    grad_accum: int = 1
    precision: str = "auto"
    world_size: int = 1
    strategy: str = "ddp"  # ddp: replicas + averaged gradients; fsdp: FSDP2 shards (interference.distributed)
    # Curation (sft_data.curate): SFT fact ids dropped from the drawn set (the forecast's culprits)
    # and known fact ids added to it as QA (replay of the at-risk facts). In the config, so a
    # curated run is named and found by them; None (the default) leaves the hash of every other run.
    exclude: list[str] | None = None
    replay_facts: list[str] | None = None

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
        if self.grad_accum < 1 or self.world_size < 1:
            raise ValueError(f"grad_accum {self.grad_accum} and world_size {self.world_size} must be at least 1.")
        for name in ("exclude", "replay_facts"):
            ids = getattr(self, name)
            if ids is not None:
                if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
                    raise ValueError(f"{name} must be a list of fact ids (strings).")
                setattr(self, name, list(dict.fromkeys(ids)) or None)  # [] is no curation: the default
        if (self.exclude or self.replay_facts) and self.real:
            raise ValueError("exclude and replay_facts apply to the synthetic world's SFT sets, not to a real model's.")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data"] = self.data.to_dict()
        # `strategy` came after runs were cached: left out at its default, so every run directory
        # (and every cache key built from this dict) written before it keeps its config hash
        # instead of refusing as "a different run" or retraining. A non-default strategy is kept.
        for name, default in NEW_DEFAULTS.items():
            if d.get(name) == default:
                d.pop(name)
        return d

    def loop_config(self, n_train: int) -> LoopConfig:
        """The one loop's settings for a run on ``n_train`` facts."""
        steps = self.steps if self.steps is not None else steps_for_epochs(n_train, self.batch_size, self.epochs)
        return LoopConfig.from_settings(self, steps=steps)

    def teacher_recipe(self) -> TeacherRecipe:
        """The format teacher is trained with the run's lr, batch size and data-order seed."""
        return TeacherRecipe(lr=self.lr, batch_size=self.batch_size, seed=self.seed, warmup_frac=self.warmup_frac,
                             min_lr_ratio=self.min_lr_ratio, grad_clip=self.grad_clip)

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        return cls(**check_fields(cls, d, ValueError, "fine-tune config"))

    @classmethod
    def quick(cls, **kw) -> "FinetuneConfig":
        """Tiny world, tiny model, few steps: for tests and smoke runs."""
        base = {"base": BaseSpec.default(quick=True).to_dict(), "data": SFTDataConfig.quick(), "epochs": 5,
                "eval_every": 5, "ckpt_every": 10}
        return cls(**{**base, **kw})


# What `python -m interference.finetune --quick` trains on top of FinetuneConfig.quick(): long
# enough that a user sees the effect (FinetuneConfig.quick()'s 5 epochs learned 45% of the new
# facts and forgot nothing). Measured on the quick base (benchmarks/quick.py, 3 seeds): sft
# learns every new fact and forgets some held-out known facts, in seconds. Kept out of quick()
# itself, whose configs key cached runs (figures, forecast) and the tests' speed.
QUICK_CLI = {"epochs": 20}


@dataclass
class RunRecord:
    out: Path
    config: FinetuneConfig
    metrics: dict

    def timeline(self) -> list[dict]:
        return [json.loads(line) for line in (self.out / TIMELINE).read_text().splitlines() if line]

    def timeline_dataset(self):
        """The per-fact timeline as a Hugging Face ``datasets.Dataset`` (Arrow: filter, group and
        ``to_pandas`` without loading every row as a dict), one row per fact per evaluation; the
        columns are the timeline's (docs/CONTRACTS.md)."""
        from datasets import Dataset
        return Dataset.from_json(str(self.out / TIMELINE))

    def load_model(self, device=None):
        """The fine-tuned model: (model, ModelConfig or None for a real model, tokenizer)."""
        if self.config.real:
            from interference.models import load_hf_model
            model, tok = load_hf_model(self.out / "model", device=device)
            return model, None, tok
        return load_model(self.out / "model", device=device)

    def world_and_data(self):
        """(World, SFTData) of this run, rebuilt deterministically from its config."""
        base_dir = base_dir_of(self.config)
        world = World(base_world(base_dir))
        return world, run_data(self.config, world, base_dir)


def run_data(cfg: "FinetuneConfig", world, base_dir: Path) -> SFTData:
    """The SFT data of a run on the synthetic world: drawn by ``cfg.data`` and curated by
    ``cfg.exclude`` / ``cfg.replay_facts`` (``sft_data.curate``; replayed ids are facts of the
    world in the run's QA template)."""
    new = world.new_entities(**cfg.new_entities) if cfg.new_entities else None
    data = build_sft_data(world, load_slick(base_dir), cfg.data, new_entities=new)
    if not cfg.exclude and not cfg.replay_facts:
        return data
    replay = []
    if cfg.replay_facts:
        by_id = {f.fact_id: f for f in world.facts(list(world.entities), template=cfg.data.train_template)}
        missing = [i for i in cfg.replay_facts if i not in by_id]
        if missing:
            raise SFTDataError(f"replayed fact {missing[0]!r} (and {len(missing) - 1} more) is not a fact of the "
                               "base's world; pass ids from the run's sft_data.json (its stability set).")
        replay = [by_id[i] for i in cfg.replay_facts]
    return curate(data, cfg.exclude or (), replay)


def current_base_fingerprint(cfg: "FinetuneConfig") -> str | None:
    """The weights fingerprint of the base ``cfg`` trains from as it is on disk now, or None when
    that base is not there (yet): a config hash names what a base was asked to be, not its weights."""
    if cfg.real:
        from interference.real_data import model_dir_fingerprint
        return model_dir_fingerprint(cfg.real["model"]) if Path(cfg.real["model"]).is_dir() else None
    d = base_dir_of(cfg)
    return base_fingerprint(d) if (d / "model.safetensors").is_file() else None


def check_same_base(rec: "RunRecord") -> None:
    """Refuse a finished run made from other base weights than the base its config names now has
    (a base re-trained under the same hash): its numbers would be served as this base's."""
    was = rec.metrics.get("base_fingerprint")
    now = current_base_fingerprint(rec.config)
    if rec.config.real and now is not None and was != now:
        from interference.real_data import legacy_model_fingerprint  # runs stamped before every byte was hashed
        now = was if legacy_model_fingerprint(rec.config.real["model"]) == was else now
    if was is not None and now is not None and was != now:
        raise RunDirError(f"the finished run in {rec.out} was trained from base weights {was}, but its base now has "
                          f"weights {now}; delete that run directory (or choose another --out) to train it "
                          "from the current base.")


def base_dir_of(cfg: "FinetuneConfig") -> Path:
    """Where the config's base model lives (the cache entry when no base_dir is given)."""
    return Path(cfg.base_dir) if cfg.base_dir else base_dir(BaseSpec.from_dict(cfg.base))


TIMELINE = "timeline.jsonl"
CKPT = "checkpoints"
RUN_FILES = ("config.json", "metrics.json", TIMELINE, "sft_data.json", "model")  # sealed when finished
# Written by figure callbacks into the run (probes.PROBE_DIR, figures.runs.PATH_DIR): sealed too when
# present, so a swapped snapshot fails verification instead of changing a figure; not required.
SNAPSHOT_DIRS = ("probes", "param_path")


def load_run(out: str | Path) -> RunRecord:
    """The ``RunRecord`` of a finished fine-tuning run directory (config, metrics; its timeline and
    model are read on demand)."""
    out = Path(out)
    if not (out / "metrics.json").exists():
        raise RunDirError(f"{out} holds no finished fine-tuning run (no metrics.json).")
    why = verify_run_dir(out, RUN_FILES)
    if why:
        raise RunDirError(f"the fine-tuning run in {out} is damaged ({why}); re-run the command that made it "
                          "to compute it again.")
    cfg = FinetuneConfig.from_dict(json.loads((out / "config.json").read_text()))
    return RunRecord(out, cfg, saved_metrics(json.loads((out / "metrics.json").read_text())))


def history_row(h: dict) -> dict:
    """A saved history row with its accuracies as numbers: null (an empty set) -> nan, missing."""
    return {**h, **{s: number(h[s]) for s in EVAL_SETS if s in h}}


def saved_metrics(m: dict) -> dict:
    """metrics.json as the run returned it in memory: the accuracies of empty sets, written as
    null (``n``: 0 beside them), are nan again, so every reader treats them as missing."""
    m = dict(m)
    for s in EVAL_SETS:
        acc = m.get(f"{s}_accuracy")
        if isinstance(acc, dict):
            m[f"{s}_accuracy"] = {**acc, "final": number(acc.get("final")), "peak": number(acc.get("peak"))}
    if "history" in m:
        m["history"] = [history_row(h) for h in m["history"]]
    return m


# ------------------------------------------------------------------ pieces of a run
def evaluate_sets(model, tokenizer, data, step: int, dist=None) -> tuple[dict[str, float], list[dict]]:
    """Accuracy per evaluation set and the timeline rows of this evaluation. Under ``dist`` each
    process scores every ``world_size``-th fact and all processes get every row, in set order."""
    from interference.distributed import eval_batch_size_for
    accs, rows = {}, []
    for name in EVAL_SETS:
        facts = data.eval_sets[name]
        mine = dist.shard(facts) if dist is not None else facts
        bs = eval_batch_size_for(model, tokenizer, mine)
        if dist is not None:
            bs = dist.same_everywhere(bs)  # FSDP: every process must run the same forward passes
        res = score_facts(model, tokenizer, mine, batch_size=bs) if mine else []
        if dist is not None:
            order = {f.fact_id: i for i, f in enumerate(facts)}
            res = sorted(dist.gather(res), key=lambda r: order[r.fact_id])
        accs[name] = sum(r.correct for r in res) / len(res) if res else float("nan")
        rows.extend({"step": step, "fact_id": r.fact_id, "set": name, "outcome": r.outcome, "correct": r.correct,
                     "gold_logprob": round(r.gold_logprob, 5), "prediction": r.prediction} for r in res)
    return accs, rows


def _append_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "a") as fh:
        fh.write("".join(json_line(r) for r in rows))
        fh.flush()


def resolve_base(cfg: FinetuneConfig, device=None, progress: bool = False):
    """(model, ModelConfig, tokenizer, world, base_dir) for the config's base model."""
    if cfg.base_dir:
        base_dir = Path(cfg.base_dir)
        why = "it holds no config.json" if not (base_dir / "config.json").exists() else verify_run_dir(base_dir, BASE_FILES)
        if why:
            raise ModelError(f"{base_dir} is not a finished pre-training run ({why}); pass a directory written by "
                             "`python -m interference.pretrain --out DIR`.")
        world = World(base_world(base_dir))
        model, mcfg, tok = load_model(base_dir, device=device)
        return model, mcfg, tok, world, base_dir
    spec = BaseSpec.from_dict(cfg.base)
    model, tok, world, base_dir = base_model(spec, device=device, progress=progress)
    return model, spec.model, tok, world, Path(base_dir)


def _metrics(history: list[dict], base_stability: float, counts: dict[str, int]) -> dict:
    """final and peak per set, with ``n``, the set's size: an empty set (no new facts in a
    Known-only run) has no accuracy, nan here and null on disk, and ``n: 0`` says why. Peak is
    over evaluations after step 0 (step 0 is the base itself, which would make the peak of
    stability trivially the base's accuracy)."""
    m: dict[str, Any] = {}
    trained = [h for h in history if h["step"] > 0] or history
    for name in EVAL_SETS:
        vals = [h[name] for h in trained if not math.isnan(h[name])]
        m[f"{name}_accuracy"] = {"final": history[-1][name], "peak": max(vals) if vals else float("nan"),
                                 "n": counts[name]}
    m["stability_accuracy_base"] = {"final": base_stability, "peak": base_stability}
    m["history"] = history
    return m


def _call(callbacks: Sequence, hook: str, *args) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(*args)


class _Timeline:
    """Loop callback of a fine-tuning run: evaluates the three sets into the timeline and history,
    and drives the user's callbacks (``on_start(ctx)``, ``on_eval(ctx, step)``, ``on_end(ctx)``)."""

    def __init__(self, ctx: RunContext, data, path: Path, callbacks: Sequence, dist=None, fingerprint: str | None = None):
        self.ctx, self.data, self.path, self.callbacks, self.dist = ctx, data, path, callbacks, dist
        self.fingerprint = fingerprint  # the base weights this run trains from
        self.history: list[dict] = []

    def checkpoint_extra(self) -> dict:
        extra = {"history": self.history, "timeline": mark_jsonl(self.path)}
        return {**extra, "base_fingerprint": self.fingerprint} if self.fingerprint else extra

    def restore(self, extra: dict) -> None:
        was = extra.get("base_fingerprint")
        if was is not None and self.fingerprint is not None and was != self.fingerprint:
            raise RunDirError(f"the interrupted run in {self.path.parent} was trained from base weights {was}, but "
                              f"the base now has weights {self.fingerprint}; resuming would mix the two, so delete "
                              "that run directory or choose another --out.")
        self.history = [history_row(h) for h in extra["history"]]  # rows written after the checkpoint are dropped:
        restore_jsonl(self.path, extra.get("timeline", extra.get("timeline_offset")), str(self.path.parent))

    def on_start(self, state) -> None:
        if not state.resumed:
            self.history = []
            self.path.write_text("")
        self.ctx.step = state.step
        _call(self.callbacks, "on_start", self.ctx)

    def on_eval(self, state) -> None:
        step = state.step
        accs, rows = evaluate_sets(self.ctx.model, self.ctx.tokenizer, self.data, step, self.dist)
        _append_rows(self.path, rows)
        loss = state.loss if step > 0 else None
        self.history.append({"step": step, "loss": loss, **accs})
        self.ctx.step, self.ctx.last_eval, self.ctx.timeline, self.ctx.last_loss = step, accs, rows, loss
        state.postfix.update(loss=f"{loss if loss is not None else float('nan'):.3f}", task=f"{accs['task']:.2f}",
                             plast=f"{accs['plasticity']:.2f}", stab=f"{accs['stability']:.2f}")
        _call(self.callbacks, "on_eval", self.ctx, step)

    def on_end(self, state) -> None:
        self.ctx.step = state.step


def with_scaler_state(extra, restore, scaler):
    """``extra`` / ``restore`` of a checkpoint, with the fp16 loss scaler's state (its scale and
    growth counter) stored beside them, so a resumed fp16 run continues at the scale it had
    rather than starting over from 2^16 and skipping steps to find it again."""
    if scaler is None:
        return extra, restore

    def extra_with():
        return {**extra(), "grad_scaler": scaler.state_dict()}

    def restore_with(x: dict) -> None:
        restore(x)
        if x.get("grad_scaler"):
            scaler.load_state_dict(x["grad_scaler"])
    return extra_with, restore_with


# ------------------------------------------------------------------ the method lifecycle
# One place for the order a method is bound to a model, used by a run directory (``finetune``)
# and an in-memory cell (``finetune_on``) alike: prepare -> trainable parameters (which validates
# the method against the model, before anything is written) -> stages (format teacher, probe) ->
# setup -> requires_grad on exactly the trainable parameters. The order is part of the results:
# ``prepare`` and the stages draw random numbers.
def bind_method(method, ctx: RunContext) -> list:
    """``method.prepare`` the context's model and return its trainable ``(name, parameter)``s."""
    ctx.model = method.prepare(ctx.model, ctx)
    return method.trainable_parameters(ctx.model)


def ready_method(method, ctx: RunContext, params: list, **stages) -> None:
    """Give the method its stages (``teacher.provide_stages(**stages)``), run its ``setup``, and
    leave gradients on exactly ``params``."""
    provide_stages(method, ctx, **stages)
    method.setup(ctx)
    chosen = {id(p) for _, p in params}
    for p in ctx.model.parameters():
        p.requires_grad_(id(p) in chosen)


def method_loss(method, ctx: RunContext):
    """The one loop's ``loss_fn`` for ``method``: its loss on the batch's logits, with its logs."""
    def loss_fn(m, batch, step):
        ctx.step = step
        return method.loss(m, batch, model_logits(m, batch.ids), ctx)
    return loss_fn


# ------------------------------------------------------------------ a run
def finetune(cfg: FinetuneConfig, out: str | Path, callbacks: Sequence = (), progress: bool = True,
             device: str | None = None, resume: bool = True) -> RunRecord:
    """Fine-tune the base model with ``cfg.method`` into ``out`` and return the run record.

    A finished run with the same config is returned without retraining; an interrupted one
    resumes from its latest checkpoint (``resume=False`` refuses instead).
    """
    from interference.distributed import Distributed
    dist = Distributed(precision=cfg.precision, grad_accum=cfg.grad_accum, device=device, strategy=cfg.strategy)
    dist.check_method(cfg.method)
    cfg = dataclasses.replace(cfg, world_size=dist.world_size)
    out = real_out(out)
    cfg_dict = cfg.to_dict()
    check_not_busy(out)
    if finished_run(out, cfg_dict, RUN_FILES, "fine-tuning run"):
        rec = load_run(out)
        check_same_base(rec)
        return rec
    if not resume and has_checkpoint(out / CKPT):
        raise RunDirError(f"{out} holds an interrupted run of this config; resume it (--resume) or choose another --out.")
    dist.check_batch(cfg.batch_size)
    # only the main process writes `out`; the others write a private copy (what a resume reads)
    out = dist.rank_out(out, keep=("config.json", "sft_data.json", TIMELINE, CKPT))
    try:
        return _finetune(cfg, cfg_dict, out, callbacks, progress, resume, dist)
    finally:
        dist.close()


def _finetune(cfg: FinetuneConfig, cfg_dict: dict, out: Path, callbacks: Sequence, progress: bool, resume: bool,
              dist) -> RunRecord:
    dev = dist.device
    method = get_method(cfg.method, **cfg.method_options)
    if cfg.real:  # a Hugging Face model and QA data; `world` is then a RealCorpus
        from interference.real_data import RealSpec, prepare_real
        mcfg = None
        model, tok, world, base_dir, data = prepare_real(RealSpec(**cfg.real), cfg.data, device=dev, dist=dist)
    else:
        if not dist.is_main:  # the main process pre-trains (or finds) the cached base first
            dist.barrier()
        model, mcfg, tok, world, base_dir = resolve_base(cfg, device=dev, progress=progress and dist.is_main)
        if dist.is_main:
            dist.barrier()
        data = run_data(cfg, world, base_dir)
    torch.manual_seed(cfg.seed)
    base = clone_model(model).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    ctx = RunContext(model=model, base_model=base, tokenizer=tok, world=world, data=data, out=out, config=cfg,
                     base_dir=base_dir, device=dev)
    params = bind_method(method, ctx)  # validates e.g. freeze layer ranges against the model
    model = ctx.model
    claim_run_dir(out, cfg_dict, what="fine-tuning run")  # after every check that can fail on input
    atomic_write_json(out / "sft_data.json", data.to_dict())
    fingerprint = base_fingerprint(base_dir)
    ready_method(method, ctx, params, format_facts=data.format_facts, recipe=cfg.teacher_recipe(), base_dir=base_dir,
                 fingerprint=fingerprint)
    chosen = {id(p) for _, p in params}
    n_trainable = sum(p.numel() for _, p in params)
    names = {n for n, p in model.named_parameters() if id(p) in chosen}
    dist.shard_model(model)  # FSDP: the parameters become shards, so the trainable ones are found again by name
    # (unsharded: the method's own order, which the optimizer state in a checkpoint is stored in)
    trainable = [p for n, p in model.named_parameters() if n in names] if dist.sharded else [p for _, p in params]

    train = pack(tok, [(f.prompt, f.answer) for f in data.train], int(model.cfg.n_ctx)).to(dev)
    loop_cfg = cfg.loop_config(len(train))

    loss_fn = method_loss(method, ctx)
    timeline = _Timeline(ctx, data, out / TIMELINE, callbacks, dist, fingerprint)
    extra, restore = with_scaler_state(timeline.checkpoint_extra, timeline.restore, dist.scaler)
    ckpt = Checkpoints(out / CKPT, cfg.ckpt_every, extra=extra, restore=restore, resume=resume)
    train_loop(model, trainable, train, loop_cfg, loss_fn, callbacks=[timeline] if dist.sharded else [ckpt, timeline],
               progress=progress and dist.is_main, desc=f"finetune[{cfg.method}]", dist=dist)

    final = method.finalize(model)
    if dist.sharded:  # gather the shards into an ordinary copy (the base's structure) to save
        full = dist.full_state_dict(final)
        final = clone_model(base)
        final.load_state_dict(full)
    if mcfg is None:
        if dist.is_main:  # other processes hold the same weights; a 1.5B copy each is not worth writing
            from interference.models import save_hf_model
            save_hf_model(final, tok, out / "model")
    else:
        save_model(final, mcfg, tok, out / "model")
    history = timeline.history
    metrics = _metrics(history, history[0]["stability"], {s: len(data.eval_sets[s]) for s in EVAL_SETS})
    metrics.update({"steps": loop_cfg.steps, "method": cfg.method, "n_train": len(data.train),
                    "n_trainable": n_trainable, "device": str(dev), "strategy": dist.strategy,
                    # elements this (the main) process held: n_trainable / world_size under FSDP
                    "trainable_on_main": sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel()
                                             for p in trainable),
                    "base_fingerprint": fingerprint, "world_size": dist.world_size,
                    "precision": dist.precision})
    _call(callbacks, "on_end", ctx)  # before the seal: their last snapshots are part of the run
    atomic_write_json(out / "metrics.json", metrics)
    clear_checkpoints(out / CKPT)
    seal_run_dir(out, RUN_FILES + SNAPSHOT_DIRS)
    release_run_dir(out)
    return RunRecord(out, cfg, metrics)


# ------------------------------------------------------------------ a run held in memory
@dataclass(frozen=True)
class SFTSpec:
    """One fine-tuning run on a list of facts, with any registered method (``method`` and its
    ``method_options``, resolved with the method's defaults so a cell key says exactly what
    trained it). Defaults follow the calibration runs: at lr 3e-4 a Known-only control stays
    clean while 100% Unknown SFT forgets ~15%. Warm-up + cosine decay over ``max_steps``, as every
    run of the one loop; training stops early once ``learned_at`` of the new facts are right."""
    max_steps: int = 600
    lr: float = 3e-4
    batch_size: int = 32
    eval_every: int = 25
    learned_at: float = 0.98  # "trained until learned": stop once this share of new facts is right
    method: str = "sft"
    method_options: dict = field(default_factory=dict)
    warmup_frac: float = 0.05
    min_lr_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        opts = get_method(self.method, **self.method_options).config.to_dict()
        object.__setattr__(self, "method_options", json.loads(json.dumps(opts)))

    def to_dict(self) -> dict:
        return asdict(self)

    def loop_config(self) -> LoopConfig:
        return LoopConfig.from_settings(self, steps=self.max_steps)

    def teacher_recipe(self) -> TeacherRecipe:
        """The format teacher of a grid: one epoch at the grid's lr and batch size, seed 0 (one
        teacher per base, shared by every seed)."""
        return TeacherRecipe(lr=self.lr, batch_size=self.batch_size, warmup_frac=self.warmup_frac,
                             min_lr_ratio=self.min_lr_ratio)


@dataclass
class SFTResult:
    model: object
    steps: int
    plasticity: float  # share of the training facts answered right at the end
    snapshots: dict = field(default_factory=dict)  # step -> {hook: [n, d]} of the tracked facts


def finetune_on(base, tok, train: Sequence[Fact], spec: SFTSpec, teacher=None,
                track: Sequence[Fact] = (), hooks: Sequence[str] = (), snap_every: int = 100,
                world=None, callbacks: Sequence = (), dist=None) -> SFTResult:
    """Fine-tune a copy of ``base`` on ``train`` with ``spec.method`` until learned, in memory: the
    hypothesis cells' run. The method is bound by the same ``bind_method`` / ``ready_method`` /
    ``method_loss`` as ``finetune``'s run directories, through the one loop.

    ``teacher``: the frozen format teacher (``Context.teacher``) for methods whose stages need
    one; ``world``: for methods that read pre-training data (ewc, replay). Snapshots of ``track``
    facts at ``hooks`` (subject's last token) are taken at step 0, at the first evaluation after
    every ``snap_every`` steps and at the end, for drift curves. ``callbacks`` are extra loop
    callbacks (``interference.loop``); ``dist`` an ``interference.distributed.Distributed`` (its
    precision: a real model's grid may run under bf16/fp16 autocast; None is one process in fp32).
    """
    torch.manual_seed(spec.seed)
    model = clone_model(base)
    for p in model.parameters():
        p.requires_grad_(True)
    dev = model_device(model)
    method = get_method(spec.method, **spec.method_options)
    data = SFTData(train=list(train), eval_sets={"task": [], "plasticity": list(train), "stability": []},
                   unknown_ids=[f.fact_id for f in train])
    ctx = RunContext(model=model, base_model=base, tokenizer=tok, world=world, data=data, out=None, config=spec,
                     device=dev)
    params = bind_method(method, ctx)
    model = ctx.model
    ready_method(method, ctx, params, recipe=spec.teacher_recipe(), teacher=teacher)
    packed = pack(tok, [(f.prompt, f.answer) for f in train], int(model.cfg.n_ctx)).to(dev)
    loss_fn = method_loss(method, ctx)

    @torch.no_grad()
    def learned(m) -> float:
        return float(answer_token_accuracy(model_logits(m, packed.ids), packed).float().mean())

    stop = WhenLearned(learned, spec.learned_at)
    snaps = Snapshots(tok, track, hooks, snap_every)
    state = train_loop(model, [p for _, p in params], packed, spec.loop_config(), loss_fn,
                       callbacks=[stop, snaps, *callbacks], dist=dist)
    final = method.finalize(model).eval()
    for p in final.parameters():
        p.requires_grad_(False)
    return SFTResult(final, state.step, stop.last, snaps.snapshots)
