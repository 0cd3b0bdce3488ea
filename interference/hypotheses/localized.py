"""Localized interference: SFT forgets the existing facts whose representations overlap the new ones.

Experiment, per seed (4 fine-tuning runs on the same base, 100% Unknown facts, trained until
learned, lr 3e-4):

- ``lookalike``: new entities built to overlap a random *target* subset T of the statement-only
  (pre-existing) entities: the j-th new name is target j's name with one piece swapped
  (``world.new_entities(overlap_with=targets)``), with fresh random values.
- ``control``: the same number of new semantic entities with random names (no designed overlap).
- ``lookalike_distill``: the lookalike set trained with self-distillation (token-level KL to the
  frozen *format teacher*, the base after one epoch of SFT on Known QA facts, built once per base
  by ``interference.teacher``; temperature 0.5, weight 1, as in the paper).
- ``uuid``: the lookalike set's values on uuid names that share nothing with existing names.

Tests and statistics (per seed, then mean and 95% t-interval over seeds):

(a) base overlap predicts forgetting: in the ``control`` run (natural, undesigned overlap), per
    watched fact the max cosine at the subject's last token (base model, centred, same relation)
    to the new facts, per layer; Spearman rho and AUROC against "forgotten" (per-seed bootstrap
    CI over facts too).
(b) designed intervention: forgetting of T vs the rest R in ``lookalike``, and of T in
    ``control``.
(c) interference signature: share of forgotten targets whose wrong answer is their look-alike's
    value, vs the chance of that (``metrics.forgetting.interference_signature``).
(d) representation drift (1 - cosine to base, held-out entities, middle layer) over training for
    SFT vs self-distillation vs uuid keys.
(e) slope of forgetting on z-scored overlap (middle layer) under SFT vs self-distillation.

share = (f[lookalike] - f[uuid]) / f[lookalike], forgetting over all watched facts: the part of
the damage that needs representational overlap. The two arms teach the *same* values, as many
facts, learned as well; only the keys differ (look-alike names vs uuid names sharing nothing), so
what uuid keys still forget is the overlap-independent rest (behavior cloning's share is its
mirror image). Verdict: ``common.decide`` on that share; required check: every arm learned its new
facts (plasticity >= 0.9).

Also reported, not deciding: the *targeting* share [(f_T - f_R)[lookalike] - (f_T - f_R)[control]]
/ f_T[lookalike], the targets' excess forgetting over the rest when new facts are built to overlap
them, beyond the same difference with as many random semantic names. It asks whether damage lands
on the specific overlapped entities; random semantic names still overlap something, so it is a
lower bound. (The first version of this runner decided on it; it is kept as a statistic because
it measures *where* the damage lands, not how much of it overlap causes.)
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np

from interference.hypotheses.common import (Cell, Preregistration, SFTSpec, decide, estimate, finetune_on, outcomes, rule_text,
                                            subject_states)
from interference.metrics.forgetting import forgetting_rate, rate
from interference.metrics.overlap import overlap_with_new
from interference.metrics.stats import auroc, ols_slope, spearman, spearman_ci
from interference.records import FactOutcomes

NAME = "localized"
ARMS = ("lookalike", "control", "lookalike_distill", "uuid")
SHARE_DEFINITION = ("(forgetting with look-alike semantic new facts - forgetting with the same facts on uuid keys) "
                    "/ forgetting with the look-alikes")

# Placeholder: the endpoint this module has decided on since its second version (recorded after
# that result, so not a pre-registration in the strict sense); the localized rewrite replaces it.
PREREGISTERED = Preregistration(
    endpoint=f"share = {SHARE_DEFINITION}, mean and 95% t-interval over seeds",
    predictions={"localized": "share near 1: uuid keys (no overlap) forget little",
                 "behavior_cloning": "share near 0: any Unknown fact teaches guessing, whatever its key",
                 "capacity": "share near 0: the count of new facts matters, not their keys"},
    rule=rule_text(SHARE_DEFINITION))


@dataclass(frozen=True)
class LocalizedConfig:
    seeds: int = 3  # 3 keep the default run under 10 min on 2 cores; the README numbers use --seeds 5
    n_targets: int = 100  # of the 400 statement-only entities; 100 look-alikes x 4 relations = 400 facts
    sft: SFTSpec = SFTSpec(learned_at=0.95)  # lr 3e-4, batch 32, <= 600 steps: 10-30 s a run on 2 cores
    kl_weight: float = 1.0  # the paper's self-distillation weight
    n_drift_facts: int = 200  # held-out facts whose drift is tracked
    drift_every: int = 50  # steps between drift snapshots (~10 points per run)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "LocalizedConfig":
        return cls(seeds=2, n_targets=20, sft=SFTSpec(max_steps=200, batch_size=16, eval_every=20, lr=1e-3),
                   n_drift_facts=60, drift_every=20)


def cells(cfg: LocalizedConfig, ctx) -> list[Cell]:
    out = [Cell("base-eval", {"base": ctx.spec.hash(), "watch": "statement_only"}, lambda: _base_eval(ctx), "base",
                base=ctx.spec)]
    for seed in range(cfg.seeds):
        for arm in ARMS:
            key = {"base": ctx.spec.hash(), "hypothesis": NAME, "arm": arm, "seed": seed,
                   "cfg": {k: v for k, v in cfg.to_dict().items() if k != "seeds"}}
            out.append(Cell(f"localized-{arm}", key, (lambda a=arm, s=seed: _run_arm(cfg, ctx, a, s)),
                            f"{arm} seed {seed}", base=ctx.spec))
    return out


def _watch(ctx):
    return ctx.world.facts(ctx.world.split("statement_only"))


def _base_eval(ctx) -> dict:
    model, tok = ctx.base()
    ok, _ = outcomes(model, tok, _watch(ctx))
    return {"base_ok": ok.tolist()}


def _entities(ctx, cfg: LocalizedConfig, arm: str, seed: int):
    world = ctx.world
    pool = world.split("statement_only")
    targets = random.Random(f"targets-{seed}").sample(pool, min(cfg.n_targets, len(pool)))
    look = world.new_entities(len(targets), "semantic", seed=seed, overlap_with=targets)
    if arm == "control":
        return targets, world.new_entities(len(targets), "semantic", seed=10_000 + seed)
    if arm == "uuid":
        return targets, world.new_entities(len(targets), "uuid", seed=seed, values_from=look)
    return targets, look


def _run_arm(cfg: LocalizedConfig, ctx, arm: str, seed: int) -> dict:
    model, tok = ctx.base()
    world = ctx.world
    targets, new = _entities(ctx, cfg, arm, seed)
    train = world.facts(new)
    watch = _watch(ctx)
    target_ids = {e.eid for e in targets}
    rest = [f for f in watch if f.entity_id not in {str(t) for t in target_ids}]
    track = random.Random(seed).sample(rest, min(cfg.n_drift_facts, len(rest)))
    layers = list(range(ctx.n_layers))
    spec = dataclasses.replace(cfg.sft, seed=seed)
    teacher = None
    if arm == "lookalike_distill":
        spec = dataclasses.replace(spec, method="self_distill", method_options={"kl_weight": cfg.kl_weight})
        teacher = ctx.teacher(cfg.sft.teacher_recipe())
    hooks = [f"blocks.{i}.hook_resid_post" for i in layers]
    res = finetune_on(model, tok, train, spec, teacher=teacher, track=track, hooks=hooks,
                      snap_every=cfg.drift_every, world=world)
    ok, preds = outcomes(res.model, tok, watch)
    base_states = subject_states(model, tok, watch, layers)
    new_states = subject_states(model, tok, train, layers)
    o = overlap_with_new(base_states, [f.relation for f in watch], new_states, [f.relation for f in train])
    ov, nearest = o.max, o.nearest
    from interference.metrics.overlap import drift
    s0 = res.snapshots[0]
    drift_series = {str(step): [float(drift(snap[h].float(), s0[h].float()).mean()) for h in hooks]
                    for step, snap in sorted(res.snapshots.items())}
    return {"arm": arm, "seed": seed, "steps": res.steps, "plasticity": res.plasticity,
            "correct": ok.tolist(), "predictions": preds, "target_eids": sorted(target_ids),
            "new_answers": [f.answer for f in train], "new_relations": [f.relation for f in train],
            "new_of_target": {str(t.eid): i for i, t in enumerate(targets)},
            "overlap": np.round(ov, 4).tolist(), "nearest": nearest.tolist(), "drift": drift_series}


def _per_seed(seed: int, base_ok: np.ndarray, arms: dict, ctx, mid: int, cfg: LocalizedConfig) -> dict:
    from interference.metrics.forgetting import events_between, interference_signature
    watch = _watch(ctx)
    ids = [x.fact_id for x in watch]  # cells store per-fact lists in this order
    A, B, C, D = (arms[a] for a in ARMS)
    tset = {str(e) for e in A["target_eids"]}
    is_t = np.array([f.entity_id in tset for f in watch])
    ok = {a: np.array(arms[a]["correct"], bool) for a in ARMS}
    base_rec = FactOutcomes.from_mask(ids, base_ok, [x.answer for x in watch])
    rec = {a: FactOutcomes.from_mask(ids, ok[a], arms[a]["predictions"]) for a in ARMS}
    f = {a: {"targets": forgetting_rate(base_rec, rec[a], is_t), "rest": forgetting_rate(base_rec, rec[a], ~is_t),
             "all": forgetting_rate(base_rec, rec[a])} for a in ARMS}
    m = {"seed": seed}
    for a in ARMS:
        for part, v in f[a].items():
            m[f"forgetting_{a}_{part}"] = v
        m[f"plasticity_{a}"] = arms[a]["plasticity"]
        m[f"steps_{a}"] = arms[a]["steps"]
    fa = f["lookalike"]["targets"]
    m["targets_minus_rest_lookalike"] = fa - f["lookalike"]["rest"]
    m["targets_minus_rest_control"] = f["control"]["targets"] - f["control"]["rest"]
    did = m["targets_minus_rest_lookalike"] - m["targets_minus_rest_control"]
    m["targeting_share"] = did / fa if fa > 0 else float("nan")
    fl = f["lookalike"]["all"]
    m["share"] = (fl - f["uuid"]["all"]) / fl if fl > 0 else float("nan")
    # (a) natural overlap -> forgetting, control run, known facts only
    forgot_b = ~ok["control"][base_ok]
    ov_b = np.array(B["overlap"])[:, base_ok]
    m["rho_by_layer"] = [spearman(ov_b[l], forgot_b) for l in range(ov_b.shape[0])]
    m["auroc_by_layer"] = [auroc(ov_b[l], forgot_b) for l in range(ov_b.shape[0])]
    rci = spearman_ci(ov_b[mid], forgot_b.astype(float), n_boot=300, seed=seed)
    m["rho_mid"], m["rho_mid_boot_ci"] = m["rho_by_layer"][mid], [rci.low, rci.high]
    m["auroc_mid"] = m["auroc_by_layer"][mid]
    q1, q3 = np.quantile(ov_b[mid], [0.25, 0.75])
    m["forgetting_top_quartile"] = rate(forgot_b[ov_b[mid] >= q3])
    m["forgetting_bottom_quartile"] = rate(forgot_b[ov_b[mid] <= q1])
    # (c) signature: forgotten targets answering their look-alike's value
    facts = {x.fact_id: x for x in watch}
    events = events_between(base_rec, rec["lookalike"])
    _, look = _entities(ctx, cfg, "lookalike", seed)
    if [x.answer for x in ctx.world.facts(look)] != A["new_answers"]:
        raise ValueError("the look-alike facts rebuilt from the world differ from the stored cell's; "
                         "delete the stale localized cells and re-run.")
    look_facts = {(f.entity_id, f.relation): f for f in ctx.world.facts(look)}  # the real new facts, rebuilt
    look_of = {str(t): str(look[i].eid) for t, i in A["new_of_target"].items()}
    neigh = {x.fact_id: [look_facts[(look_of[x.entity_id], x.relation)]] for x in watch if x.entity_id in look_of}
    ev_t = {k: e for k, e in events.items() if k in neigh}
    sig = interference_signature(ev_t, facts, neigh)
    m["signature_rate"], m["signature_chance"] = sig.rate, sig.chance
    m["signature_excess"] = sig.rate - sig.chance if sig.n else float("nan")
    # (d) drift at the middle layer, end of training
    for a in ("lookalike", "lookalike_distill", "uuid", "control"):
        last = max(arms[a]["drift"], key=int)
        m[f"drift_{a}"] = arms[a]["drift"][last][mid]
    # (e) overlap -> forgetting slope, SFT vs self-distillation (same new facts, same overlap)
    ov_a = np.array(A["overlap"])[mid][base_ok]
    m["slope_sft"] = ols_slope(ov_a, (~ok["lookalike"][base_ok]).astype(float))
    m["slope_distill"] = ols_slope(ov_a, (~ok["lookalike_distill"][base_ok]).astype(float))
    m["slope_reduction"] = m["slope_sft"] - m["slope_distill"]
    return m


STAT_KEYS = ("forgetting_lookalike_targets", "forgetting_lookalike_rest", "forgetting_control_targets",
             "forgetting_control_rest", "forgetting_lookalike_distill_targets", "forgetting_uuid_targets",
             "forgetting_lookalike_all", "forgetting_lookalike_distill_all", "forgetting_uuid_all",
             "targets_minus_rest_lookalike", "targets_minus_rest_control", "targeting_share", "rho_mid", "auroc_mid", "forgetting_top_quartile",
             "forgetting_bottom_quartile", "signature_rate", "signature_chance", "signature_excess",
             "drift_lookalike", "drift_lookalike_distill", "drift_uuid", "drift_control",
             "slope_sft", "slope_distill", "slope_reduction", "plasticity_lookalike", "plasticity_control",
             "plasticity_lookalike_distill", "plasticity_uuid")


def summarize(cfg: LocalizedConfig, results: list[dict], ctx) -> dict:
    base_ok = np.array(results[0]["base_ok"], bool)
    runs = results[1:]
    mid = (ctx.n_layers - 1) // 2
    per_seed = []
    for seed in range(cfg.seeds):
        arms = {r["arm"]: r for r in runs if r["seed"] == seed}
        per_seed.append(_per_seed(seed, base_ok, arms, ctx, mid, cfg))
    stats = {k: estimate([p[k] for p in per_seed]) for k in STAT_KEYS}
    L = ctx.n_layers
    stats["rho_by_layer"] = [estimate([p["rho_by_layer"][l] for p in per_seed]) for l in range(L)]
    stats["auroc_by_layer"] = [estimate([p["auroc_by_layer"][l] for p in per_seed]) for l in range(L)]
    share = estimate([p["share"] for p in per_seed])
    learned = min(min(p["plasticity_lookalike"], p["plasticity_control"], p["plasticity_uuid"]) for p in per_seed)
    checks = {"every SFT arm learned (plasticity >= 0.9)": learned >= 0.9}
    verdict = decide(share["value"], (share["low"], share["high"]), n_seeds=share["n"],
                     checks_pass=all(checks.values()))
    drift_curves = {a: {s: [r["drift"][s][mid] for r in runs if r["arm"] == a and s in r["drift"]]
                        for s in sorted({s for r in runs if r["arm"] == a for s in r["drift"]}, key=int)}
                    for a in ("lookalike", "lookalike_distill", "uuid")}
    return {"hypothesis": NAME, "verdict": verdict, "share": share, "share_definition": SHARE_DEFINITION,
            "rule": rule_text(SHARE_DEFINITION), "checks": checks, "statistics": stats, "per_seed": per_seed,
            "series": {"drift_mid_layer": {a: {s: float(np.mean(v)) for s, v in c.items()} for a, c in drift_curves.items()},
                       "middle_layer": mid, "n_base_known": int(base_ok.sum())},
            "headline": [("forgetting, look-alike semantic keys", stats["forgetting_lookalike_all"]),
                         ("forgetting, same facts on uuid keys", stats["forgetting_uuid_all"]),
                         ("targeting share (damage on overlapped targets)", stats["targeting_share"]),
                         ("forgetting targets, look-alike SFT", stats["forgetting_lookalike_targets"]),
                         ("forgetting rest, look-alike SFT", stats["forgetting_lookalike_rest"]),
                         ("forgetting targets, control SFT", stats["forgetting_control_targets"]),
                         ("forgetting rest, control SFT", stats["forgetting_control_rest"]),
                         ("Spearman rho overlap->forgetting", stats["rho_mid"]),
                         ("AUROC overlap->forgetting", stats["auroc_mid"]),
                         ("signature rate (chance below)", stats["signature_rate"]),
                         ("signature chance", stats["signature_chance"]),
                         ("drift, SFT (look-alike)", stats["drift_lookalike"]),
                         ("drift, self-distillation", stats["drift_lookalike_distill"]),
                         ("drift, uuid keys", stats["drift_uuid"]),
                         ("slope overlap->forgetting, SFT", stats["slope_sft"]),
                         ("slope reduction by self-distillation", stats["slope_reduction"]),
                         ("new facts learned, self-distillation", stats["plasticity_lookalike_distill"])]}


def run(cfg: LocalizedConfig | None = None, ctx=None) -> dict:
    """Run (or reuse) the localized-interference grid and write ``<out>/localized/verdict.json``."""
    import sys
    from interference.hypotheses.common import Context, run_module
    from interference.pretrain import BaseSpec
    return run_module(sys.modules[__name__], cfg or LocalizedConfig(),
                      ctx or Context(BaseSpec.default(), "runs/hypotheses"))


def config(quick: bool = False) -> LocalizedConfig:
    return LocalizedConfig.quick() if quick else LocalizedConfig()
