"""What every hypothesis runner shares: pre-registration, the verdict rule, the grid runner with
result reuse, the fine-tuning cell, and small per-fact statistics.

Pre-registration: every hypothesis module defines ``PREREGISTERED``, a ``Preregistration`` of its
primary endpoint (the one statistic its verdict is decided on), what each of the three hypotheses
predicts for that endpoint, and the decision rule with its thresholds, written before any run.
``run_module`` records it in ``verdict.json["preregistered"]`` with the hash of its text and folds
that hash into every cell key and into the output directory's config, so a grid computed under
one endpoint is never reused as if it had been planned for another (the output directory is
refused, and the cells' keys differ).

The verdict rule (``decide``) is the one place that turns the endpoint statistic into a word.
Each module defines its own statistic (oriented so that larger = more support for its own
hypothesis) and states two thresholds in its pre-registration: ``main_at`` and
``negligible_below`` (for a share of forgetting: 0.5 and 0.1). With a 95% interval [lo, hi] over
seeds:

- ``main_driver``  lo >= main_at        : with confidence, the effect is large.
- ``contributes``  lo > 0               : a clear, positive effect, maybe small.
- ``not_supported`` hi < negligible_below: with confidence, at most a negligible effect (or negative).
- ``inconclusive``  otherwise           : the interval reaches both "none" and "something", or
                                          there are fewer than 2 seeds, or a required check failed.

A grid is a list of ``Cell``s (one fine-tuning run or one measurement each). A cell's result is
stored as JSON under ``<out>/cells/<kind>-<hash of its key>.json``; a re-run with the same key
loads it instead of recomputing, so extending ``--seeds`` reuses the seeds already done and
hypotheses that share a run (``all``) train it once. A stored cell also records the weights
fingerprint of the base it was computed from; one whose fingerprint differs from the current
base's is recomputed, never mixed with cells of other weights (a config hash says what a base was
asked to be, not what it is: thread counts and machines change the weights).

Every fine-tuning cell goes through ``finetune_on``, a thin call of the one loop
(``interference.loop``) with any registered method, so every method can be an arm.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from interference.batching import answer_token_accuracy, pack
from interference.callbacks import Snapshots, StopWhenLearned
from interference.data import Fact
from interference.evaluate import score_facts
from interference.io import atomic_write_json, config_hash, json_ready, number, read_checked_json, write_checked_json
from interference.loop import LoopConfig, train_loop
from interference.methods import get_method
from interference.methods.base import RunContext
from interference.metrics.stats import Estimate, mean_ci
from interference.models import clone_model, model_device, model_logits
from interference.teacher import TeacherRecipe, provide_stages

VERDICTS = ("main_driver", "contributes", "not_supported", "inconclusive")
MAIN_DRIVER_AT = 0.5  # the lower CI bound must reach half of the forgetting
NEGLIGIBLE_BELOW = 0.1  # an upper CI bound under 10% of the forgetting counts as "no part"


def decide(share_mean: float, share_ci: tuple[float, float], *, n_seeds: int = 2,
           checks_pass: bool = True, main_at: float = MAIN_DRIVER_AT,
           negligible_below: float = NEGLIGIBLE_BELOW) -> str:
    """The verdict for ``share`` (mean and 95% CI over seeds); see the module docstring.

    ``checks_pass=False`` (a hypothesis' required secondary test failed, e.g. the learned new
    facts did not reach equal accuracy in the arms being compared) turns a positive verdict into
    ``inconclusive``: the share cannot be trusted then.
    """
    lo, hi = share_ci
    if n_seeds < 2 or any(not math.isfinite(x) for x in (share_mean, lo, hi)):
        return "inconclusive"
    if hi < negligible_below:
        return "not_supported"
    if not checks_pass:
        return "inconclusive"
    if lo >= main_at:
        return "main_driver"
    if lo > 0:
        return "contributes"
    return "inconclusive"


HYPOTHESIS_NAMES = ("capacity", "behavior_cloning", "localized")


class PreregistrationError(ValueError):
    """A pre-registration that does not state what it must."""


@dataclass(frozen=True)
class Preregistration:
    """A hypothesis module's primary endpoint, each hypothesis' prediction for it, and the rule.

    ``predictions`` has exactly one entry per hypothesis name (capacity, behavior_cloning,
    localized): an experiment only discriminates if the three are written down before it runs.
    ``main_at`` / ``negligible_below`` are the thresholds ``decide`` applies to the endpoint.
    """
    endpoint: str
    predictions: dict
    rule: str
    main_at: float = MAIN_DRIVER_AT
    negligible_below: float = NEGLIGIBLE_BELOW

    def __post_init__(self) -> None:
        if set(self.predictions) != set(HYPOTHESIS_NAMES):
            raise PreregistrationError(
                f"predictions name {sorted(self.predictions)}; give exactly one per hypothesis "
                f"{list(HYPOTHESIS_NAMES)}.")
        if not self.endpoint.strip() or not self.rule.strip() or not all(
                isinstance(v, str) and v.strip() for v in self.predictions.values()):
            raise PreregistrationError("endpoint, rule and every prediction must be non-empty text.")
        if not self.negligible_below <= self.main_at:
            raise PreregistrationError(f"negligible_below={self.negligible_below} must not exceed main_at={self.main_at}.")

    def text(self) -> str:
        """The canonical text that is hashed (predictions in a fixed order)."""
        preds = "\n".join(f"- {h}: {self.predictions[h]}" for h in HYPOTHESIS_NAMES)
        return (f"Endpoint: {self.endpoint}\nPredictions:\n{preds}\nRule: {self.rule}\n"
                f"Thresholds: main_at={self.main_at!r}, negligible_below={self.negligible_below!r}\n")

    def hash(self) -> str:
        import hashlib
        return hashlib.sha256(self.text().encode()).hexdigest()[:12]

    def record(self) -> dict:
        """What verdict.json stores under ``preregistered``."""
        return {"endpoint": self.endpoint, "predictions": {h: self.predictions[h] for h in HYPOTHESIS_NAMES},
                "rule": self.rule, "main_at": self.main_at, "negligible_below": self.negligible_below,
                "hash": self.hash()}

    def decide(self, est: dict, checks_pass: bool = True) -> str:
        """The verdict for an ``estimate`` dict of the endpoint, with this registration's thresholds."""
        return decide(est["value"], (est["low"], est["high"]), n_seeds=est.get("n", 0), checks_pass=checks_pass,
                      main_at=self.main_at, negligible_below=self.negligible_below)


def preregistration_of(module) -> Preregistration:
    prereg = getattr(module, "PREREGISTERED", None)
    if not isinstance(prereg, Preregistration):
        raise PreregistrationError(f"hypothesis module {module.__name__} defines no PREREGISTERED "
                                   "Preregistration; state the endpoint, predictions and rule before running it.")
    return prereg


def with_prereg(cells: Sequence["Cell"], prereg_hash: str) -> list["Cell"]:
    """The cells with the pre-registration hash folded into their keys (so into their files)."""
    return [dataclasses.replace(c, key={**c.key, "prereg": prereg_hash}) for c in cells]


def format_estimate(e) -> str:
    """'mean [low, high]' of an ``estimate`` dict, for tables printed or written in markdown."""
    if not isinstance(e, dict) or not math.isfinite(number(e.get("value"))):
        return "n/a"  # missing (null on disk, nan in memory: e.g. n = 0 seeds), never a number
    lo, hi = number(e.get("low")), number(e.get("high"))
    ci = f"[{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) and math.isfinite(hi) else "[n/a]"
    return f"{number(e['value']):.3f} {ci}"


def rule_text(share_definition: str) -> str:
    return (f"share = {share_definition}. Over seeds, 95% t-interval [lo, hi]: main_driver if lo >= "
            f"{MAIN_DRIVER_AT}; contributes if lo > 0; not_supported if hi < {NEGLIGIBLE_BELOW}; "
            "else inconclusive (also with < 2 seeds or a failed required check).")


def estimate(values: Sequence[float]) -> dict:
    """Mean and 95% t-interval over seeds, ignoring nan seeds; JSON-ready."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return {"value": math.nan, "low": math.nan, "high": math.nan, "n": 0, "level": 0.95}
    e: Estimate = mean_ci(v)
    return {"value": e.value, "low": e.low, "high": e.high, "n": e.n, "level": e.level}


# ------------------------------------------------------------------ the grid
@dataclass
class Cell:
    """One unit of work: ``fn()`` -> JSON-able dict, cached under the hash of ``key``. ``base`` is
    the BaseSpec whose weights the result depends on (None: it depends on no model)."""
    kind: str
    key: dict
    fn: Callable[[], dict]
    label: str = ""
    base: Any = None

    @property
    def file(self) -> str:
        return f"{self.kind}-{config_hash(self.key)}.json"


@dataclass
class GridReport:
    results: list[dict]
    computed: int = 0
    reused: int = 0
    stale: int = 0  # stored cells of other base weights, recomputed
    seconds: float = 0.0


def run_grid(cells: Sequence[Cell], cache: str | Path, progress: bool = True, desc: str = "grid",
             fingerprint: Callable[[Any], str] | None = None) -> GridReport:
    """Run every cell not already stored under ``cache``; one progress bar for the whole grid.

    ``fingerprint(base_spec)`` gives the current weights fingerprint of a cell's base; a stored
    cell computed from other weights is recomputed (and said so on stderr), never reused."""
    cache = Path(cache)
    rep = GridReport(results=[])
    t0 = time.time()
    stale: dict[tuple, int] = {}
    bar = tqdm(total=len(cells), desc=desc, disable=not progress, dynamic_ncols=True)
    for c in cells:
        path = cache / c.file
        fp = fingerprint(c.base) if (fingerprint is not None and c.base is not None) else None
        res = None
        stored = _stored_cell(path, c) if path.exists() else None
        if stored is not None:
            if stored.get("fingerprint") == fp:
                res = stored["result"]
            else:
                k = (stored.get("fingerprint"), fp)
                stale[k] = stale.get(k, 0) + 1
        if res is None:
            bar.set_postfix_str(c.label or c.kind)
            res = json_ready(c.fn())  # as a later run will read it back: a missing number is None
            write_checked_json(path, {"kind": c.kind, "key": c.key, "fingerprint": fp, "result": res})
            rep.computed += 1
        else:
            rep.reused += 1
        rep.results.append(res)
        bar.update(1)
    bar.close()
    for (old, new), n in stale.items():
        print(f"{desc}: {n} stored cell(s) came from base weights {old or 'of unknown fingerprint'}, not the "
              f"current base's {new}; recomputed them instead of mixing results of different weights.",
              file=sys.stderr)
    rep.stale = sum(stale.values())
    rep.seconds = time.time() - t0
    return rep


def _stored_cell(path: Path, c: Cell) -> dict | None:
    """The stored cell ``c`` ({"kind", "key", "fingerprint", "result"}), or None (with a note on
    stderr) when the file is damaged: not UTF-8 JSON, the wrong shape, another key, or content
    that fails its checksum. A damaged cell is recomputed, never trusted."""
    stored, why = read_checked_json(path)
    if stored is not None and stored.get("key") != json.loads(json.dumps(c.key)):
        stored, why = None, "it was computed for another key"
    if stored is not None and not isinstance(stored.get("result"), dict):
        stored, why = None, "it holds no result object"
    if stored is None:
        tqdm.write(f"note: cell {path} is damaged ({why}); computing it again.", file=sys.stderr)
    return stored


class CellLookupError(KeyError):
    """A summary asked for a cell the grid does not hold exactly once."""


class ResultSet(list):
    """A grid's results, looked up by what the cell *is* (items of its key), never by position.

    Still a list in cell order, for summaries written before lookups existed. ``one(arm="sft",
    seed=0)`` returns the result of the single cell whose key holds those items, and refuses (a
    ``CellLookupError`` naming the query) when none or several match, so a reordered or extended
    grid can never feed a statistic the wrong run.
    """

    def __init__(self, cells: Sequence[Cell], results: Sequence[dict]):
        if len(cells) != len(results):
            raise ValueError(f"{len(cells)} cells but {len(results)} results.")
        super().__init__(results)
        self.keys = [json.loads(json.dumps(c.key)) for c in cells]

    def matching(self, **items) -> list[dict]:
        want = json.loads(json.dumps(items))
        return [r for k, r in zip(self.keys, self) if all(k.get(n) == v for n, v in want.items())]

    def one(self, **items) -> dict:
        got = self.matching(**items)
        if len(got) != 1:
            raise CellLookupError(f"{len(got)} cells match {items}; a summary needs exactly one.")
        return got[0]


# ------------------------------------------------------------------ fine-tuning cell
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
        return LoopConfig(lr=self.lr, batch_size=self.batch_size, steps=self.max_steps, warmup_frac=self.warmup_frac,
                          min_lr_ratio=self.min_lr_ratio, seed=self.seed, eval_every=self.eval_every)

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
    """Fine-tune a copy of ``base`` on ``train`` with ``spec.method`` until learned, through the
    one loop: the method's ``prepare/stages/setup/trainable_parameters/loss/finalize`` are used
    exactly as ``interference.train.finetune`` uses them.

    ``teacher``: the frozen format teacher (``Context.teacher``) for methods whose stages need
    one; ``world``: for methods that read pre-training data (ewc, replay). Snapshots of ``track``
    facts at ``hooks`` (subject's last token) are taken at step 0, at the first evaluation after
    every ``snap_every`` steps and at the end, for drift curves. ``callbacks`` are extra loop
    callbacks (``interference.loop``); ``dist`` an ``interference.distributed.Distributed`` (its
    precision: a real model's grid may run under bf16/fp16 autocast; None is one process in fp32).
    """
    from interference.sft_data import SFTData

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
    model = ctx.model = method.prepare(model, ctx)
    params = method.trainable_parameters(model)
    provide_stages(method, ctx, recipe=spec.teacher_recipe(), teacher=teacher)
    method.setup(ctx)
    chosen = {id(p) for _, p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    packed = pack(tok, [(f.prompt, f.answer) for f in train], int(model.cfg.n_ctx)).to(dev)

    def loss_fn(m, batch, step):
        ctx.step = step
        return method.loss(m, batch, model_logits(m, batch.ids), ctx)

    @torch.no_grad()
    def learned(m) -> float:
        return float(answer_token_accuracy(model_logits(m, packed.ids), packed).float().mean())

    stop = StopWhenLearned(learned, spec.learned_at)
    snaps = Snapshots(tok, track, hooks, snap_every)
    state = train_loop(model, [p for _, p in params], packed, spec.loop_config(), loss_fn,
                       callbacks=[stop, snaps, *callbacks], dist=dist)
    final = method.finalize(model).eval()
    for p in final.parameters():
        p.requires_grad_(False)
    return SFTResult(final, state.step, stop.last, snaps.snapshots)


def outcomes(model, tok, facts: Sequence[Fact], score=score_facts) -> tuple[np.ndarray, list[str]]:
    """(correct [n] bool, greedy predictions) of ``facts``, scored by ``score`` (a real model's
    context reads to the newline: ``evaluate.read_facts``)."""
    res = score(model, tok, facts)
    return np.array([r.correct for r in res], dtype=bool), [r.prediction for r in res]


def subject_states(model, tok, facts: Sequence[Fact], layers: Sequence[int]) -> torch.Tensor:
    """[L, n, d] residual stream after each of ``layers`` at the subject's last token."""
    from interference.probes import capture
    hooks = [f"blocks.{i}.hook_resid_post" for i in layers]
    acts = capture(model, tok, facts, hooks, "subject_last")
    return torch.stack([acts[h] for h in hooks])


def write_json(path: str | Path, obj) -> None:
    """Kept for callers outside this package's core: ``atomic_write_json`` (nan -> null) is the policy."""
    atomic_write_json(path, obj)


# ------------------------------------------------------------------ running one hypothesis
class Context:
    """The base model spec, output directory and device a hypothesis runs with. Bases are loaded
    (pre-trained on first use, cached by hash) lazily, so a fully reused grid trains nothing."""

    def __init__(self, spec, out: str | Path, device: str | None = None, progress: bool = True, jobs: int = 1):
        from interference.world import World
        self.spec, self.out, self.device, self.progress, self.jobs = spec, Path(out), device, progress, jobs
        self.world = World(spec.world)
        self.n_layers = spec.model.n_layers
        self.dist = None  # one process, fp32: the synthetic grids (a real model's RealContext sets its precision)
        self._bases: dict[str, tuple] = {}
        self._teachers: dict[str, object] = {}
        self._fingerprints: dict[str, str] = {}

    def base(self, spec=None):
        """(model, tokenizer) of the cached base for ``spec`` (default: this context's)."""
        from interference.pretrain import base_model
        spec = spec or self.spec
        if spec.hash() not in self._bases:
            # a missing base is pre-trained here (minutes, once: cached by hash) with its own bar
            model, tok, _, _ = base_model(spec, device=self.device, progress=self.progress)
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)  # the base is a frozen reference; fine-tuning deep-copies it
            self._bases[spec.hash()] = (model, tok)
        return self._bases[spec.hash()]

    def base_dir(self, spec=None) -> Path:
        from interference.pretrain import cache_root
        return cache_root() / f"base-{(spec or self.spec).hash()}"

    def fingerprint(self, spec=None) -> str:
        """The weights fingerprint of the cached base for ``spec`` (pre-trained first if missing)."""
        from interference.pretrain import base_fingerprint
        spec = spec or self.spec
        if spec.hash() not in self._fingerprints:
            if not (self.base_dir(spec) / "metrics.json").exists():
                self.base(spec)
            self._fingerprints[spec.hash()] = base_fingerprint(self.base_dir(spec))
        return self._fingerprints[spec.hash()]

    def teacher(self, recipe: TeacherRecipe, spec=None, n_facts: int = 400):
        """The frozen format teacher of the base (one epoch of SFT on ``n_facts`` HighlyKnown QA
        facts of pre-training entities, whose QA the base already saw, so no watched fact is
        touched), built once through the one loop and cached beside the base."""
        import random
        from interference.pretrain import load_slick
        from interference.sft_data import known_qa_facts
        from interference.teacher import format_teacher
        spec = spec or self.spec
        key = config_hash({"base": spec.hash(), "recipe": recipe.to_dict(), "n": n_facts})
        if key not in self._teachers:
            model, tok = self.base(spec)
            facts = known_qa_facts(self.world, load_slick(self.base_dir(spec)), n_facts, random.Random("format-teacher"))
            self._teachers[key] = format_teacher(model, tok, facts, recipe, base_dir=self.base_dir(spec),
                                                 fingerprint=self.fingerprint(spec))
        return self._teachers[key]

    def cache(self) -> Path:
        return self.out / "cells"


def hypothesis_config(module, cfg, ctx) -> dict:
    """What makes an output directory compatible: everything but the number of seeds (more seeds
    extend an earlier run; cells are keyed individually), including the pre-registration hash."""
    return {"hypothesis": module.NAME, "base": ctx.spec.to_dict(),
            "config": {k: v for k, v in cfg.to_dict().items() if k != "seeds"},
            "preregistered": preregistration_of(module).hash()}


def run_module(module, cfg, ctx: Context) -> dict:
    """Claim ``<out>/<name>``, run the grid (reusing stored cells), summarise, write verdict.json
    (with per-seed metrics) and the plots; return the verdict dict."""
    from interference.io import claim_run_dir
    from interference import plots
    prereg = preregistration_of(module)
    d = claim_run_dir(ctx.out / module.NAME, hypothesis_config(module, cfg, ctx), what=f"{module.NAME} run")
    cells = with_prereg(module.cells(cfg, ctx), prereg.hash())
    if getattr(ctx, "jobs", 1) > 1:  # workers store the cells; the serial pass below only reads them
        from interference.hypotheses.parallel import run_in_workers
        for b in {c.base.hash(): c.base for c in cells if c.base is not None}.values():
            ctx.fingerprint(b)  # every base pre-trained here first: two workers must never train one
        run_in_workers(cells, lambda part: run_grid(part, ctx.cache(), progress=False, desc=module.NAME,
                                                    fingerprint=ctx.fingerprint), ctx.jobs)
    rep = run_grid(cells, ctx.cache(), progress=ctx.progress, desc=module.NAME, fingerprint=ctx.fingerprint)
    v = module.summarize(cfg, ResultSet(cells, rep.results), ctx)
    v["preregistered"] = prereg.record()
    v["seeds"] = cfg.seeds
    v["cells"] = {"computed": rep.computed, "reused": rep.reused, "recomputed_other_weights": rep.stale,
                  "seconds": round(rep.seconds, 1)}
    v["config"] = cfg.to_dict()
    v["base_hash"] = ctx.spec.hash()
    v["base_fingerprints"] = {b.hash(): ctx.fingerprint(b) for b in {c.base.hash(): c.base for c in cells
                                                                      if c.base is not None}.values()}
    v = json_ready(v)  # as verdict.json will read back: a missing statistic is None, also in memory
    write_json(d / "per_seed.json", v["per_seed"])
    write_json(d / "verdict.json", v)
    v["plots"] = [str(p) for p in plots.plot_hypothesis(v, d)]
    write_json(d / "verdict.json", v)
    return v
