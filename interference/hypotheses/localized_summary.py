"""Turn the localized grid's cells into per-seed statistics, estimates over seeds and the verdict.

Results are matched to arms and seeds by the ``arm`` / ``seed`` fields each cell stores, never by
their position in the grid, and every run's watched facts are checked to be the base's, in order.
"""
from __future__ import annotations

import math

import numpy as np

from interference.hypotheses.grid import seed_range
from interference.hypotheses.prereg import decide_estimate
from interference.metrics.stats import estimate
from interference.metrics.dose import dose_response_slope, is_monotone, signature_vs_null, targets_minus_rest
from interference.metrics.forgetting import forgetting_rate
from interference.records import FactOutcomes

READS = ("learned", "final")  # equal learning (primary) and equal steps
FEATURES = ("fragility", "overlap_mid", "shared_pieces", "gradient_conflict")

# Design constants of the localized experiment; defined here (localized.py imports them) so the
# summary never imports its runner.
NEGLIGIBLE_SLOPE = 0.01  # one point of extra target forgetting per shared piece: too small to matter
MAIN_EXCESS = 0.5  # main driver: at least half of an overlapped target's forgetting is targeted
DOSE = {"share0": 0, "share1_first": 1, "share2": 2}  # arm -> name pieces shared with its target
PREDICT_ARMS = ("share0", "share2")  # arms whose per-fact labels the predictors are scored on


def _bool(bits: str) -> np.ndarray:
    return np.frombuffer(bits.encode(), dtype=np.uint8) == ord("1")


def index_results(results: list[dict]) -> tuple[dict, dict]:
    """(base result, {(seed, arm): result}); refuses duplicates and a missing base. With a
    ``ResultSet`` (results that know their cell keys) each result is checked to be its cell's."""
    if hasattr(results, "keys") and hasattr(results, "one"):
        for k, r in zip(results.keys, results):
            if k.get("arm") != r.get("arm") or k.get("seed", r.get("seed")) != r.get("seed"):
                raise ValueError(f"cell {k.get('arm')}/{k.get('seed')} holds the result of "
                                 f"{r.get('arm')}/{r.get('seed')}; delete the damaged cell file.")
    base = [r for r in results if r.get("arm") == "base"]
    if len(base) != 1:
        raise ValueError(f"expected exactly one base evaluation among the results, found {len(base)}.")
    runs = {}
    for r in results:
        if r.get("arm") == "base":
            continue
        k = (int(r["seed"]), r["arm"])
        if k in runs:
            raise ValueError(f"two results for arm {k[1]!r}, seed {k[0]}; cells must be unique.")
        runs[k] = r
    return base[0], runs


def decide_localized(slope: dict, monotone: bool, excess: dict, checks_pass: bool) -> str:
    """The pre-registered rule (``localized.RULE``), composed of the one rule ``prereg.decide``:
    the dose slope's interval decides not_supported (upper bound under ``NEGLIGIBLE_SLOPE``) and
    contributes (lower bound above 0, with a monotone dose response and the required checks); a
    contributing slope is the main driver when the targeted excess's lower bound reaches
    ``MAIN_EXCESS``. The slope alone never says main_driver (its ``main_at`` is infinite)."""
    word = decide_estimate(slope, checks_pass=checks_pass and monotone, main_at=math.inf,
                           negligible_below=NEGLIGIBLE_SLOPE)
    if word == "contributes" and decide_estimate(excess, main_at=MAIN_EXCESS) == "main_driver":
        return "main_driver"
    return word


def _arm_stats(m: dict, prefix: str, base: FactOutcomes, now: FactOutcomes, is_t) -> float:
    ft, fr = forgetting_rate(base, now, is_t), forgetting_rate(base, now, ~is_t)
    m[f"{prefix}/forget_targets"], m[f"{prefix}/forget_rest"] = ft, fr
    m[f"{prefix}/forget_all"] = forgetting_rate(base, now)
    m[f"{prefix}/contrast"] = d = targets_minus_rest(base, now, is_t)
    return d


def per_seed(seed: int, base: dict, runs: dict, arms, n_layers: int) -> dict:
    fids = base["fact_ids"]
    base_ok = np.array(base["base_ok"], bool)
    base_rec = FactOutcomes.from_mask(fids, base_ok)
    m: dict = {"seed": seed}
    for read in READS:
        contrast = {}
        for arm in arms:
            r = runs.get((seed, arm))
            if r is None:
                continue
            if r["fact_ids"] != fids:
                raise ValueError(f"arm {arm} seed {seed} watched other facts than the base evaluation; re-run it.")
            tset = set(r["target_eids"])
            is_t = np.array([e in tset for e in r["entity_ids"]])
            rd = r["reads"].get(read)
            m[f"{read}/{arm}/learned"] = float(rd is not None)
            if rd is None:
                contrast[arm] = math.nan
                continue
            m[f"{read}/{arm}/steps"], m[f"{read}/{arm}/plasticity"] = rd["step"], rd["plasticity"]
            contrast[arm] = _arm_stats(m, f"{read}/{arm}", base_rec, FactOutcomes.from_mask(fids, _bool(rd["correct"])), is_t)
        dose = [a for a in DOSE if a in contrast]
        m[f"{read}/dose_slope"] = dose_response_slope([DOSE[a] for a in dose], [contrast[a] for a in dose])
        if {"share1_first", "share1_second"} <= set(contrast):
            m[f"{read}/first_minus_second"] = contrast["share1_first"] - contrast["share1_second"]
        if {"share1_last", "share1_first"} <= set(contrast):
            m[f"{read}/last_minus_first"] = contrast["share1_last"] - contrast["share1_first"]
        ft = m.get(f"{read}/share2/forget_targets", math.nan)
        m[f"{read}/share2_excess_share"] = contrast.get("share2", math.nan) / ft if ft and ft > 0 else math.nan
        _signature(m, read, seed, base_ok, fids, runs)
    _patching(m, seed, base_ok, fids, runs, n_layers)
    return m


def _signature(m: dict, read: str, seed: int, base_ok, fids, runs) -> None:
    arm, null = runs.get((seed, "share2")), runs.get((seed, "uuid"))
    if arm is None or null is None or arm["reads"].get(read) is None or null["reads"].get(read) is None:
        return
    if arm["pair_value"] != null["pair_value"]:
        raise ValueError(f"seed {seed}: the share2 and uuid arms taught different values; the null arm must match.")
    sel = np.array([f in arm["pair_value"] for f in fids])
    idx = np.where(sel)[0]
    pv = [arm["pair_value"][fids[i]] for i in idx]
    a, n = arm["reads"][read], null["reads"][read]
    s = signature_vs_null(base_ok[idx], _bool(a["correct"])[idx], [a["predictions"][i] for i in idx],
                          _bool(n["correct"])[idx], [n["predictions"][i] for i in idx], pv)
    for k, v in s.items():
        m[f"{read}/signature/{k}"] = v


def _patching(m: dict, seed: int, base_ok, fids, runs, n_layers: int) -> None:
    for arm in ("share2", "uuid"):
        r = runs.get((seed, arm))
        if r is None or "patching" not in r or not r["patching"]["fact_ids"]:
            continue
        p = r["patching"]
        tset = set(r["target_eids"])
        ent = dict(zip(r["fact_ids"], r["entity_ids"]))
        is_t = np.array([ent[f] in tset for f in p["fact_ids"]])
        groups = {"targets": is_t, "rest": ~is_t} if arm == "share2" else {"all": np.ones(len(is_t), bool)}
        usable = _bool(p["control_usable"])
        for layer in range(n_layers):
            own, ctrl = _bool(p["own"][str(layer)]), _bool(p["control"][str(layer)])
            for g, sel in groups.items():
                if sel.any():
                    m[f"patch/{arm}/{g}/own/L{layer}"] = float(own[sel].mean())
                    cs = sel & usable
                    m[f"patch/{arm}/{g}/control/L{layer}"] = float(ctrl[cs].mean()) if cs.any() else math.nan
                    m[f"patch/{arm}/{g}/own_minus_control/L{layer}"] = (
                        m[f"patch/{arm}/{g}/own/L{layer}"] - m[f"patch/{arm}/{g}/control/L{layer}"])
        _patching_sets(m, arm, p, groups, usable)


PATCH_CONTROLS = {"control": "control_usable", "mean": "mean_usable"}  # donor -> the bits saying it exists


def _patching_sets(m: dict, arm: str, p: dict, groups: dict, usable) -> None:
    """The mended instrument's readings (``patch_forgotten``'s ``sets``; a cell made before it has
    none, and gets none of these keys): per position set, layer and group the share restored by
    the fact's own base state, by each control, and own minus each control on the facts where
    that control exists (paired, so the difference is not diluted by facts without a donor)."""
    for pos, rec in p.get("sets", {}).items():
        for lab, own_bits in rec["own"].items():
            own = _bool(own_bits)
            for g, sel in groups.items():
                if not sel.any():
                    continue
                k = f"patch/{arm}/{g}/{pos}"
                m[f"{k}/own/{lab}"] = float(own[sel].mean())
                for donor, ok_key in PATCH_CONTROLS.items():
                    ok = _bool(p[ok_key]) if donor == "mean" else usable
                    cs = sel & ok
                    c = _bool(rec[donor][lab])
                    m[f"{k}/{donor}/{lab}"] = float(c[cs].mean()) if cs.any() else math.nan
                    m[f"{k}/own_minus_{donor}/{lab}"] = float(own[cs].mean() - c[cs].mean()) if cs.any() else math.nan


PATCH_SETS_MEANING = {
    "subject": "every token of the subject",
    "shared": "the subject tokens at the positions the arm's look-alike keeps (share2: the 1st and 2nd; "
              "for rest facts the same positions of a name no new entity was built on)",
    "subject_last": "the subject's last token (the original reading; the one share2 piece not shared)",
}


def patching_readings(runs: dict, seeds, n_layers: int) -> dict:
    """What the mended patching statistics (``patch/{arm}/{group}/{set}/{donor}/{layer}``) are, per
    patched arm: its groups, the position sets it has and those not applicable (with why), the
    layer labels, and the cells made before the mended instrument (no readings of theirs)."""
    from interference.metrics.patching import MEAN_MIN_POOL, POSITION_SETS
    arms, old = {}, []
    for arm in ("share2", "uuid"):
        cells = [runs[(s, arm)] for s in seeds if (s, arm) in runs and "patching" in runs[(s, arm)]]
        if not cells:
            continue
        have = [c["patching"] for c in cells if c["patching"].get("fact_ids")]
        old += [f"{arm} seed {c['seed']}" for c in cells
                if c["patching"].get("fact_ids") and "sets" not in c["patching"]]
        sets = sorted({n for p in have for n in p.get("sets", {})}, key=POSITION_SETS.index)
        na = {n: ("the arm's new names keep no piece of any target" if n == "shared" else "no position")
              for n in POSITION_SETS if have and n not in sets and all("sets" in p for p in have)}
        pools = [x for p in have for x in p.get("mean_pool", [])]
        arms[arm] = {"groups": ["targets", "rest"] if arm == "share2" else ["all"], "position_sets": sets,
                     "not_applicable": na, "forgotten_facts": [len(p["fact_ids"]) for p in have],
                     "mean_pool": {"min": min(pools), "median": float(np.median(pools))} if pools else None}
    return {"decides": "nothing: a reported secondary of activation patching (the verdict rule is unchanged)",
            "layers": ["embed", *[f"L{i}" for i in range(n_layers)]],
            "hooks": "embed = embed.hook_out (token embeddings entering block 0); Li = blocks.i.hook_resid_post",
            "position_sets": PATCH_SETS_MEANING,
            "donors": {"own": "the fact's own base state",
                       "control": "a random other entity's base state (same relation, prompt length; another answer)",
                       "mean": f"the mean base state of the other entities of the same relation and prompt length "
                               f"(at least {MEAN_MIN_POOL})"},
            "own_minus": "own - control on the facts where that control exists; 95% t-interval over seeds",
            "arms": arms, "cells_without_mended_patching": old}


def predictor_table(base: dict, runs: dict, seeds, arm: str) -> dict:
    """Leave-one-seed-out AUROC of the fragility baseline and of baseline + each predictor."""
    from interference.metrics.predictors import auroc_increment
    from interference.metrics.stats import auroc
    base_ok = np.array(base["base_ok"], bool)
    lp = np.array(base["gold_logprob"], float)
    feats, labels, single = {}, {}, {f: [] for f in FEATURES}
    for s in seeds:
        r = runs.get((s, arm))
        if r is None or "predictors" not in r or r["reads"].get("learned") is None:
            continue
        p = r["predictors"]
        x = np.stack([-lp, p["overlap_mid"], p["shared_pieces"], p["gradient_conflict"]], 1).astype(float)[base_ok]
        y = ~_bool(r["reads"]["learned"]["correct"])[base_ok]
        # overlap is undefined (nan) for a watched fact whose relation no new fact has (a real model's
        # few-target quick grid); every predictor is then compared on the facts where all are defined
        ok = np.isfinite(x).all(1)
        x, y = x[ok], y[ok]
        feats[s], labels[s] = x, y
        for j, f in enumerate(FEATURES):
            single[f].append(auroc(x[:, j], y))
    out = {"arm": arm, "seeds": sorted(feats), "auroc_single": {f: estimate(v) for f, v in single.items()}}
    if len(feats) < 2:
        return out
    for j, f in enumerate(FEATURES[1:], start=1):
        r = auroc_increment(feats, labels, [0], [j])
        out[f"baseline_plus_{f}"] = {"auroc_baseline": estimate(r["auroc_baseline"]),
                                    "auroc_full": estimate(r["auroc_full"]), "increment": estimate(r["increment"])}
    r = auroc_increment(feats, labels, [0], [1, 2, 3])
    out["baseline_plus_all"] = {"auroc_baseline": estimate(r["auroc_baseline"]),
                                "auroc_full": estimate(r["auroc_full"]), "increment": estimate(r["increment"])}
    return out


def summarize(cfg, results: list[dict], ctx) -> dict:
    base, runs = index_results(results)
    seeds = list(seed_range(cfg))
    ps = [per_seed(s, base, runs, cfg.arms, ctx.n_layers) for s in seeds]
    keys = sorted({k for p in ps for k in p if k != "seed"})
    stats = {k: estimate([p.get(k, math.nan) for p in ps]) for k in keys}
    slope = stats.get("learned/dose_slope", estimate([]))
    means = [stats.get(f"learned/{a}/contrast", {}).get("value", math.nan) for a in DOSE]
    monotone = is_monotone(means)
    dose_arms = [a for a in DOSE if a in cfg.arms]
    learned_all = all(p.get(f"learned/{a}/learned", 0.0) == 1.0 for p in ps for a in dose_arms)
    checks = {"every dose arm learned >= 95% of its new facts within the step budget": bool(learned_all)}
    excess = stats.get("learned/share2_excess_share", estimate([]))
    verdict = decide_localized(slope, monotone, excess, all(checks.values()))
    predictors = {a: predictor_table(base, runs, seeds, a) for a in PREDICT_ARMS if a in cfg.arms}
    g = lambda k: stats.get(k, estimate([]))  # noqa: E731
    headline = [("dose slope (targets - rest per shared piece), equal learning", slope),
                ("dose slope, equal steps", g("final/dose_slope"))]
    headline += [(f"targets - rest, {a}", g(f"learned/{a}/contrast")) for a in cfg.arms]
    headline += [("1st - 2nd piece shared", g("learned/first_minus_second")),
                 ("share2 excess share of target forgetting", excess),
                 ("signature: forgotten targets with look-alike value, share2", g("learned/signature/rate_arm")),
                 ("signature: same value, uuid null arm", g("learned/signature/rate_null")),
                 ("signature excess over null", g("learned/signature/excess"))]
    mid = (ctx.n_layers - 1) // 2
    headline += [(f"patching L{mid}: own base state restores (share2 targets)", g(f"patch/share2/targets/own/L{mid}")),
                 (f"patching L{mid}: other entity's state (control)", g(f"patch/share2/targets/control/L{mid}"))]
    for a, t in predictors.items():
        if "baseline_plus_all" in t:
            headline += [(f"AUROC fragility baseline ({a})", t["baseline_plus_all"]["auroc_baseline"]),
                         (f"AUROC + overlap, pieces, gradient ({a})", t["baseline_plus_all"]["auroc_full"])]
    return {"hypothesis": "localized", "verdict": verdict, "endpoint": slope, "share": slope,
            "share_definition": "dose_slope (see preregistered.endpoint): not a share of forgetting",
            "checks": checks, "monotone_mean_contrast": monotone, "dose_means": means,
            "statistics": stats, "predictors": predictors, "per_seed": ps,
            "patching": patching_readings(runs, seeds, ctx.n_layers),
            "series": {"middle_layer": mid, "n_base_known": int(np.sum(base["base_ok"]))}, "headline": headline}
