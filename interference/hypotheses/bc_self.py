"""Behavior cloning's share in the decomposition's unit, from an arm that teaches the behaviour without the content.

Pre-registered experiment (written and committed before any run of it). Why it exists: both
behavior-cloning shares so far (the decomposition's B and ``bc_contrast``'s) contrast an arm that
answers the Unknown questions with one that says "I don't know" to them, and at no Known share
tried (``docs/bc_mix_pilot.md``) is the "I don't know" arm selective: it also abstains on 9-45% of
the facts the model knows, so B counts abstentions as damage and decides nothing. The pilot ``docs/bc_self_pilot.md`` (seeds 0-3, which
is why this design runs seeds 4-11) built an arm that needs no abstention:

- ``sem``: the decomposition's natural set (``count`` new semantic-name entities on every
  relation; the same facts as its ``sem`` arm for that seed);
- ``drift``: the decomposition's Known-only set for that seed;
- ``self``: ``sem``'s questions, in the same order, each trained on the base's own greedy answer
  to it (read inside the cell, from the base's weights). It teaches what SFT on Unknown questions
  teaches as a behaviour, a confident answer to a question the model cannot answer from what it
  knows, and carries no answer the model does not already give.

Every arm runs ``steps`` updates of the decomposition's recipe on the pinned default bases, never
stopped early, with the movement read on (how far the weights moved; the trained answers'
probability at each evaluation).

Primary endpoint, per width: G = (F[self] - F[drift]) / E, E = F[sem] - F[drift], F the one
forgetting function (share of the base-known statement-only watched facts answered wrong after
the same steps): the share of SFT's excess forgetting that the behaviour alone reproduces. Ratio
of seed means with the linearised 95% t-interval, as the decomposition's L and C, in their unit.

Predictions. behavior_cloning: G >= 0.5 (the damage comes with learning to answer Unknown
questions confidently, which the self arm learns). localized: G < 0.5 (the self targets are what
the shared name pieces already give; nothing new is written where the watched facts live).
capacity: G < 0.5 (no new fact is stored, so no room is taken).

Rule, per width (the decomposition's, for this one share): main_driver if lo >= 0.5; contributes
if lo > 0; not_supported if hi < 0.1; else inconclusive. Required checks: E's interval above 0;
sem's mean plasticity >= 0.95 at the end; the self arm learned its targets (their mean probability
>= 0.95 at the end); else a positive word becomes inconclusive.

Named before the run (the pilot measured it): the self arm starts from a far lower loss and moves
about half as far as ``sem`` (M = D[self] / D[sem] 0.45-0.49), so all three hypotheses expect a
G below what an arm moving as far would give. G is still the endpoint: it is the share of the
excess, in the unit of the other shares. R (damage per unit of movement, self over sem) and M are
reported beside it and decide nothing; R assumes damage grows in proportion to movement. The
pilot's G (0.06-0.17) also says the likely word: a small share whose interval may clear 0.

Secondary, not deciding: G at equal learning (every arm read at the step ``sem`` learned its
facts); G in confident-wrong-answer units (H instead of F); M and R; every arm's F, H and
abstention; the self targets' mean probability at the start and the end, and the share of them
that is the true new answer or "unknown".
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from interference.hypotheses.arms import fixed_steps, rates_at, readout, run_arm, step_matched
from interference.hypotheses.grid import Cell, seed_range
from interference.hypotheses.prereg import Preregistration
from interference.metrics.stats import estimate, ratio_estimate
from interference.train import SFTSpec

NAME = "bc_self"
ENDPOINT = ("per width (d64, d128, d256), G = (F[self] - F[drift]) / (F[sem] - F[drift]): F = share of the "
            "base-known statement-only watched facts answered wrong after the same 300 steps; self = sem's Unknown "
            "questions, each trained on the base's own greedy answer to it; ratio of seed means, 95% t-interval of "
            "the linearised ratio; seeds 4-11 (the pilot saw 0-3)")
PREREGISTERED = Preregistration(
    endpoint=ENDPOINT,
    predictions={
        "behavior_cloning": "G >= 0.5: the damage comes with learning to answer Unknown questions confidently, "
                            "which the self arm learns without new content",
        "capacity": "G < 0.5: the self arm stores no new fact, so it takes no room",
        "localized": "G < 0.5: the self targets are what the shared name pieces already give; nothing new is "
                     "written where the watched facts live",
    },
    rule="per width: main_driver if lo >= 0.5; contributes if lo > 0; not_supported if hi < 0.1; else "
         "inconclusive. Required checks: the CI of E above 0; sem's mean plasticity >= 0.95 at the end; the self "
         "arm's trained answers at mean probability >= 0.95 at the end; else a positive word is inconclusive. "
         "M and R (movement) are reported and decide nothing.",
    main_at=0.5, negligible_below=0.1)
ARMS = ("sem", "drift", "self")
LEARNED_AT = 0.95  # the decomposition's
EXTENDABLE = ("widths",)


@dataclass(frozen=True)
class BCSelfConfig:
    seeds: int = 8
    first_seed: int = 4  # seeds first_seed .. first_seed + seeds - 1; the pilot used 0-3
    widths: tuple[int, ...] = (64, 128, 256)
    count: int = 100  # the decomposition's natural set: 100 new entities x 4 relations
    sft: SFTSpec = SFTSpec(max_steps=300, eval_every=50)  # the decomposition's steps and recipe

    def __post_init__(self) -> None:
        if not self.widths or self.seeds < 1 or self.count < 1 or self.first_seed < 0:
            raise ValueError(f"bc_self needs widths, seeds >= 1, count >= 1 and first_seed >= 0 (got widths="
                             f"{self.widths}, seeds={self.seeds}, count={self.count}, first_seed={self.first_seed}).")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "BCSelfConfig":
        return cls(seeds=2, first_seed=0, widths=(32,), count=8,
                   sft=SFTSpec(max_steps=60, batch_size=16, eval_every=20, lr=1e-3))


def config(quick: bool = False) -> BCSelfConfig:
    return BCSelfConfig.quick() if quick else BCSelfConfig()


def self_train(model, tok, sem: list) -> tuple[list, dict]:
    """``sem``'s questions answered with the model's greedy answers, and what those answers are."""
    from interference.evaluate import score_facts
    from interference.sft_data import relabel_own
    from interference.world import IDK_ANSWER
    scored = score_facts(model, tok, sem)
    n = len(sem)
    about = {"share_true_answer": sum(r.correct for r in scored) / n,
             "share_unknown": sum(r.prediction == IDK_ANSWER for r in scored) / n,
             "mean_p_own_answer": sum(r.confidence for r in scored) / n}
    return relabel_own(sem, [r.prediction for r in scored]), about


def arm_facts(world, cfg, arm: str, seed: int) -> list:
    """The arm's training set before the self relabelling (done in the cell, from the base):
    the decomposition's ``sem`` for ``sem`` and ``self``, its ``drift`` for ``drift``."""
    from interference.hypotheses.decomposition import arm_facts as decomposition_arm_facts
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; bc_self has {', '.join(ARMS)}.")
    return decomposition_arm_facts(world, cfg, "drift" if arm == "drift" else "sem", seed)


def run_self_arm(ctx, spec, facts: list, watch: list, sft, own: bool) -> dict:
    """One arm with the movement read; ``own``: first relabel ``facts`` with the base's answers
    (its weights, not the world, set them) and keep what those answers were."""
    about = None
    if own:
        facts, about = self_train(*ctx.base(spec), facts)
    res = run_arm(ctx, spec, facts, watch, sft, movement=True)
    return {**res, "self_targets": about} if own else res


def arm_cell(ctx, spec, width: int, seed: int, arm: str, facts: list, watch: list, sft, **key) -> Cell:
    """One arm's cell (``run_self_arm``), keyed by what sets its result; ``key`` adds what tells
    one design's cells from another's (this design's count; the pilot's name)."""
    key = {"base": spec.hash(), "width": width, "seed": seed, "arm": arm, "n_train": len(facts),
           "targets": "base_greedy" if arm == "self" else "set", "sft": sft.to_dict(), **key}
    return Cell(f"bcself-{arm}", key, lambda: run_self_arm(ctx, spec, facts, watch, sft, arm == "self"),
                f"d{width} {arm} seed {seed}", base=spec)


def cells(cfg: BCSelfConfig, ctx) -> list[Cell]:
    from interference.hypotheses.capacity import watched
    watch = watched(ctx.world)
    out = []
    for seed in seed_range(cfg):
        for width in cfg.widths:
            spec = ctx.spec.with_width(width)
            sft = fixed_steps(cfg.sft, cfg.sft.max_steps, seed)
            out += [arm_cell(ctx, spec, width, seed, arm, arm_facts(ctx.world, cfg, arm, seed), watch, sft,
                             count=cfg.count) for arm in ARMS]
    return out


def seed_reads(got: dict) -> dict:
    """One (width, seed)'s reads from its three arm results (``run_arm`` with ``movement``)."""
    r = {a: readout(got[a], LEARNED_AT) for a in ARMS}
    m = {}
    for a in ARMS:
        m[f"F_{a}"], m[f"H_{a}"] = r[a]["end"]["forgetting"], r[a]["end"]["hallucination"]
        m[f"abstain_{a}"], m[f"plasticity_{a}"] = r[a]["end"]["abstention"], r[a]["end"]["plasticity"]
        m[f"D_{a}"] = got[a]["update_norm"]
        m[f"p0_{a}"], m[f"pend_{a}"] = got[a]["curve"][0]["train_p"], got[a]["curve"][-1]["train_p"]
    step = r["sem"]["learned"]["step"] if r["sem"]["learned"]["reached"] else None
    m["sem_learned_step"] = step if step is not None else math.nan
    for a in ARMS:  # every arm read at the step sem learned its facts
        m[f"Fl_{a}"] = rates_at(got[a], step_matched(got[a], step))["forgetting"] if step is not None else math.nan
    m.update({f"self_{k}": v for k, v in got["self"]["self_targets"].items()})
    return m


def reads(rows: list[dict]) -> dict:
    """G, M, R and the secondaries from one width's per-seed rows (pure)."""
    col = lambda k: [r.get(k, math.nan) for r in rows]  # noqa: E731
    diff = lambda a, b: [x - y for x, y in zip(col(a), col(b))]  # noqa: E731
    E, S = diff("F_sem", "F_drift"), diff("F_self", "F_drift")
    per_move = lambda xs, ds: [x / d if d > 0 else math.nan for x, d in zip(xs, ds)]  # noqa: E731
    out = {"E": estimate(E), "G": ratio_estimate(S, E),
           "M": ratio_estimate(col("D_self"), col("D_sem")),
           "R": ratio_estimate(per_move(S, col("D_self")), per_move(E, col("D_sem"))),
           "G_learned": ratio_estimate(diff("Fl_self", "Fl_drift"), diff("Fl_sem", "Fl_drift")),
           "G_hallucination": ratio_estimate(diff("H_self", "H_drift"), diff("H_sem", "H_drift"))}
    for k in ("F_sem", "F_drift", "F_self", "H_sem", "H_self", "abstain_self", "plasticity_sem", "D_sem", "D_self",
              "D_drift", "p0_self", "pend_self", "p0_sem", "pend_sem", "sem_learned_step", "self_share_true_answer",
              "self_share_unknown", "self_mean_p_own_answer"):
        out[k] = estimate(col(k))
    return out


def checks_of(rd: dict) -> dict:
    """The required checks on one width's reads (``reads``)."""
    from interference.io import number  # a missing number passes nothing
    return {"excess": number(rd["E"].get("low")) > 0,
            "sem learned": number(rd["plasticity_sem"].get("value")) >= LEARNED_AT,
            "self arm learned its targets": number(rd["pend_self"].get("value")) >= LEARNED_AT}


def summarize(cfg: BCSelfConfig, results, ctx) -> dict:
    per_seed, by_width, words, checks = [], {}, {}, {}
    for w in cfg.widths:
        rows = [{"seed": s, **seed_reads({a: results.one(width=w, seed=s, arm=a) for a in ARMS})}
                for s in seed_range(cfg)]
        per_seed += [{"width": w, **r} for r in rows]
        rd = reads(rows)
        ck = checks_of(rd)
        by_width[str(w)] = rd
        ok = all(ck.values())
        words[str(w)] = {"step_matched": PREREGISTERED.decide(rd["G"], checks_pass=ok),
                         "learning_matched": PREREGISTERED.decide(rd["G_learned"], checks_pass=ok)}
        checks.update({f"d{w} {k}": v for k, v in ck.items()})
    stats = {f"{k}_d{w}": v for w, rd in by_width.items() for k, v in rd.items()}
    main = str(128 if 128 in cfg.widths else cfg.widths[-1])
    headline = []
    for w in cfg.widths:
        rd, wd = by_width[str(w)], words[str(w)]
        headline += [(f"d{w} E = F[sem] - F[drift]", rd["E"]), (f"d{w} G ({wd['step_matched']})", rd["G"]),
                     (f"d{w} G, learning-matched ({wd['learning_matched']})", rd["G_learned"]),
                     (f"d{w} M = D[self] / D[sem]", rd["M"]), (f"d{w} R, damage per unit of movement", rd["R"])]
    return {"hypothesis": NAME, "verdict": words[main]["step_matched"], "share": by_width[main]["G"],
            "endpoint": by_width[main]["G"], "words": words, "share_definition": ENDPOINT,
            "rule": PREREGISTERED.rule, "checks": checks, "statistics": stats, "per_seed": per_seed,
            "seed_numbers": list(seed_range(cfg)), "headline": headline,
            "series": {"widths": list(cfg.widths), "by_width": by_width, "arms": list(ARMS),
                       "steps": cfg.sft.max_steps}}
