"""Decomposition: which share of SFT's forgetting does each hypothesis explain, in one unit, by width?

Pre-registered experiment (written and committed before any run of it). Why it exists: the three
registered designs decide on three different quantities (capacity on a share of a small uuid-key
excess, behavior cloning on a share of confident wrong answers among unrelated facts, localized on
an absolute dose slope), so their words cannot say which hypothesis is the *main* driver. Here
every hypothesis gets a share of the same denominator, from its own arms, at three widths.

The natural SFT set: ``count`` new entities with ``semantic`` names (recombined from the watched
entities' name pieces: natural, unplanned overlap) on every relation, ``count x relations`` facts.
At each width (d64, d128, d256: bases of the same world and the same pre-training steps, pinned in
the repository) and seed, the same set is taught these ways, each for ``steps`` updates (never
stopped early; read at the end and where each arm learned its facts):

- ``sem``: plain SFT on the natural set;
- ``uuid``: the identical facts (same values, relations, count and order: ``values_from``) on
  ``uuid`` keys, which share no name piece with any watched entity;
- ``replay``: ``sem`` with the pre-training corpus replayed 1:1 (the ``replay`` method), for
  ``replay_factor`` x ``steps`` updates: long joint training, where the model may rehearse every
  old fact for as long as it takes; read at its end;
- ``drift``: Known-only SFT (QA of pre-trained entities the base already answers), as many facts;
- ``sem_known`` and ``idk_known``: the natural set mixed 1:1 with Known QA facts, its new facts
  answered (``sem_known``) or relabelled "I don't know" (``idk_known``); the Known half keeps the
  idk arm from learning "always abstain" (the registered idk arm abstained on 95.5% of the known
  watched facts), and both arms carry it, so they differ only in what the new questions teach;
- ``sd_sem`` and ``sd_uuid`` (at ``sd_widths`` only: CPU time): ``sem`` and ``uuid`` trained with
  self-distillation to the base's format teacher.

Watched facts: every statement-only fact (the base's pre-existing knowledge reached only through
format generalisation); F[arm] = share of those the base answered right that are now wrong.

Primary endpoint, per width, at the step-matched point (the end of ``steps`` updates; ``replay``
at the end of its long run). The excess E = F[sem] - F[drift], and three shares of it:

    localized         L = (F[sem] - F[uuid]) / E        forgetting that needs name overlap
    capacity          C = (F[replay] - F[drift]) / E    forgetting that long rehearsal cannot repair
    behavior_cloning  B = (F[sem_known] - F[idk_known]) / E   forgetting that answering the
                                                          Unknown questions (not asking them) causes

each a ratio of seed means with a 95% t-interval from the linearised ratio
(``metrics.stats.ratio_estimate``), over ``seeds`` seeds.

Predictions (one per hypothesis, for all three shares):
- localized: L >= 0.5 (uuid keys, which overlap nothing, forget little); C < 0.1 (rehearsal
  re-anchors the overlapping representations); B < 0.5 (an "I don't know" label on a look-alike
  question still moves the shared representation, so the idk arm forgets too).
- capacity: C >= 0.5 (with no room, rehearsal cannot keep old and new facts); L ~ 0 (uuid facts
  need the same room); B >= 0.5 too (idk labels store no new facts); forgetting shrinks as the
  width grows.
- behavior_cloning: B >= 0.5 (the damage is learning to answer Unknown questions); L ~ 0 (uuid
  questions are as Unknown); C < 0.5 (rehearsing the old answers re-teaches them, and a cloned
  behaviour needs no room).

Rule, per width, the same for all three shares: with the 95% interval [lo, hi] of a share,
``main_driver`` for the largest share whose lo >= 0.5 (any other share with lo >= 0.5 is
``contributes``); ``contributes`` if lo > 0; ``not_supported`` if hi < 0.1; else
``inconclusive``. Required checks: for every hypothesis, E > 0 (its interval above 0: there is an
excess to share) and the new facts learned (mean plasticity >= 0.95 at the end) in the sem, uuid,
replay, sem_known and idk_known arms; else a positive word becomes ``inconclusive``. For capacity
also: the long replay run stopped recovering (its watched forgetting fell by at most 0.005 over
its last quarter, mean over seeds); if it was still recovering, C overstates what rehearsal leaves,
and a positive capacity word becomes ``inconclusive``.

Secondary, not deciding: the same three shares at equal learning (each arm read at the first
evaluation where its facts are learned, the drift arm at the same step; ``replay`` at its end);
E and every F with CIs; how each share moves per doubling of the width (slope of the share's seed
values on log2 width, t-interval over seeds); the per-seed-ratio t-intervals beside the ratio of
means; at ``sd_widths``: whether self-distillation shrinks the overlap part
(F[sem] - F[uuid]) - (F[sd_sem] - F[sd_uuid]) more than the rest (F[uuid] - F[drift]) -
(F[sd_uuid] - F[drift]); abstention and hallucination per arm.

Added after the first results (3 seeds at d64/d128), deciding nothing and kept apart from the
registered statistics: B in confident-wrong-answer units, (H[sem_known] - H[idk_known]) /
(H[sem] - H[drift]), because the idk arm abstained on about half of the known watched facts.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


from interference.hypotheses.arms import fixed_steps, rates_at, readout, run_arm, step_matched
from interference.hypotheses.capacity import known_facts, watched
from interference.hypotheses.grid import Cell, seed_range
from interference.hypotheses.prereg import Preregistration, decide_estimate
from interference.metrics.endpoints import slope_per_doubling
from interference.metrics.stats import estimate, ratio_estimate
from interference.train import SFTSpec

NAME = "decomposition"
ENDPOINT = ("per width (d64, d128, d256), shares of one excess E = F[sem] - F[drift] (F = share of base-known "
            "statement-only facts answered wrong after the same steps; sem: natural semantic-name SFT, drift: "
            "Known-only SFT): localized L = (F[sem] - F[uuid]) / E (the identical facts on uuid keys), capacity "
            "C = (F[replay] - F[drift]) / E (sem with 1:1 pre-training replay for 4x the steps), behavior cloning "
            "B = (F[sem_known] - F[idk_known]) / E (the set mixed 1:1 with Known QA, new answers vs 'I don't "
            "know'); ratio of seed means, 95% t-interval of the linearised ratio")
PREREGISTERED = Preregistration(
    endpoint=ENDPOINT,
    predictions={
        "localized": "L >= 0.5; C < 0.1 (rehearsal re-anchors the overlapping representations); B < 0.5 (an idk "
                     "label on a look-alike question still moves the shared representation)",
        "capacity": "C >= 0.5; L ~ 0 (uuid facts need the same room); B >= 0.5 (idk labels store no facts); "
                    "forgetting shrinks as the width grows",
        "behavior_cloning": "B >= 0.5; L ~ 0 (uuid questions are as Unknown); C < 0.5 (rehearsal re-teaches the "
                            "old answers; a cloned behaviour needs no room)",
    },
    rule="per width, for each share with 95% interval [lo, hi]: main_driver for the largest share with lo >= 0.5 "
         "(another share with lo >= 0.5 is contributes); contributes if lo > 0; not_supported if hi < 0.1; else "
         "inconclusive. Required checks: the CI of E above 0 and mean plasticity >= 0.95 at the end in the sem, "
         "uuid, replay, sem_known and idk_known arms (all shares); the long replay's forgetting fell by at most "
         "0.005 over its last quarter (capacity); else a positive word is inconclusive.",
    main_at=0.5, negligible_below=0.1)

EXTENDABLE = ("widths", "sd_widths")  # they only add cells: an --out with fewer is extended, not refused
SHARES = {"localized": "L", "capacity": "C", "behavior_cloning": "B"}
# Each share's numerator, F[a] - F[b] (its denominator is always E = F[sem] - F[drift]): the one
# definition the ratio of means, the per-seed ratios and the width trend all read.
TERMS = {"L": ("F_sem", "F_uuid"), "C": ("F_replay", "F_drift"), "B": ("F_sem_known", "F_idk_known")}
EXCESS = ("F_sem", "F_drift")
BASE_ARMS = ("sem", "uuid", "replay", "drift", "sem_known", "idk_known")
SD_ARMS = ("sd_sem", "sd_uuid")
LEARNED_ARMS = ("sem", "uuid", "replay", "sem_known", "idk_known")
LEARNED_AT = 0.95
STILL_RECOVERING = 0.005  # forgetting drop over the long replay's last quarter that counts as still recovering


@dataclass(frozen=True)
class DecompositionConfig:
    seeds: int = 8
    first_seed: int = 0  # seeds first_seed .. first_seed + seeds - 1 (grid.seed_range)
    widths: tuple[int, ...] = (64, 128, 256)
    count: int = 100  # new entities x 4 relations = 400 facts, the natural set
    # 300 updates at lr 3e-4, batch 32: 400 new facts are learned in 100-300 of them (capacity's runs)
    sft: SFTSpec = SFTSpec(max_steps=300, eval_every=50)
    replay_factor: int = 4  # the long replay arm trains this many times the steps
    replay_ratio: float = 1.0
    sd_widths: tuple[int, ...] = (128,)
    # the bases' consolidation level (steps after memorising, in memorisation phases); None: the
    # default bases' own (1.0). The consolidation axis runs one level per --out.
    consolidation: float | None = None

    def __post_init__(self) -> None:
        if not self.widths or any(w < 1 for w in self.widths) or self.seeds < 1 or self.count < 1:
            raise ValueError(f"decomposition needs widths, seeds and a count >= 1 (got widths={self.widths}, "
                             f"seeds={self.seeds}, count={self.count}).")
        if self.replay_factor < 1:
            raise ValueError(f"replay_factor={self.replay_factor} must be >= 1 (the long run is at least as long).")
        if self.sft.max_steps % (2 * self.sft.eval_every):
            raise ValueError(f"max_steps={self.sft.max_steps} must be a multiple of 2 x eval_every={self.sft.eval_every}: "
                             "the long replay is evaluated every 2 x eval_every and is read at max_steps too.")
        if self.first_seed < 0:
            raise ValueError(f"first_seed={self.first_seed} must be >= 0.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "DecompositionConfig":
        return cls(seeds=2, widths=(32, 64), count=8, replay_factor=2, sd_widths=(64,),
                   sft=SFTSpec(max_steps=60, batch_size=16, eval_every=15, lr=1e-3))


def config(quick: bool = False) -> DecompositionConfig:
    return DecompositionConfig.quick() if quick else DecompositionConfig()


def arm_facts(world, cfg: DecompositionConfig, arm: str, seed: int) -> list:
    """The training facts of one arm. ``sem`` and ``uuid`` are the same facts on two key styles
    (values copied entity by entity); the mixed arms add as many Known QA facts, in a fixed
    interleaving."""
    from interference.sft_data import relabel_idk
    sem_entities = world.new_entities(cfg.count, "semantic", seed=40_000 + seed)
    sem = world.facts(sem_entities)
    if arm in ("sem", "replay", "sd_sem"):
        return sem
    if arm in ("uuid", "sd_uuid"):
        return world.facts(world.new_entities(cfg.count, "uuid", seed=40_000 + seed, values_from=sem_entities))
    known = known_facts(world, len(sem), seed)
    if arm == "drift":
        return known
    if arm in ("sem_known", "idk_known"):
        return mixed_with_known(relabel_idk(sem) if arm == "idk_known" else sem, known)
    raise ValueError(f"unknown arm {arm!r}")


def mixed_with_known(new: list, known: list, per_new: int = 1) -> list:
    """Each new fact followed by its ``per_new`` Known facts (a fixed order; once the Known facts
    run out, the rest of the new facts alone): the mixed arms' training set, whose new answers
    alone differ between arms. ``per_new`` > 1: the Known-share pilot (docs/bc_mix_pilot.md)."""
    return [f for i, n in enumerate(new) for f in (n, *known[per_new * i: per_new * (i + 1)])]


def _arms_at(cfg: DecompositionConfig, width: int) -> tuple[str, ...]:
    return BASE_ARMS + (SD_ARMS if width in cfg.sd_widths else ())


def _sft(cfg: DecompositionConfig, arm: str, seed: int) -> SFTSpec:
    if arm == "replay":
        # evaluated half as often (the long run is read at its end and over its last quarter)
        return fixed_steps(cfg.sft, cfg.replay_factor * cfg.sft.max_steps, seed, method="replay",
                           method_options={"ratio": cfg.replay_ratio, "seed": seed, "corpus": "pretraining"},
                           eval_every=2 * cfg.sft.eval_every)
    if arm in SD_ARMS:
        return fixed_steps(cfg.sft, cfg.sft.max_steps, seed, method="self_distill")
    return fixed_steps(cfg.sft, cfg.sft.max_steps, seed)


def cells(cfg: DecompositionConfig, ctx) -> list[Cell]:
    world = ctx.world
    watch = watched(world)
    out = []
    for seed in seed_range(cfg):
        for width in cfg.widths:
            spec = base_at(ctx, cfg, width)
            for arm in _arms_at(cfg, width):
                train = arm_facts(world, cfg, arm, seed)
                sft = _sft(cfg, arm, seed)
                key = {"base": spec.hash(), "width": width, "seed": seed, "arm": arm, "count": cfg.count,
                       "n_train": len(train), "sft": sft.to_dict()}
                out.append(Cell(f"decomp-{arm}", key,
                                (lambda s=spec, t=train, f=sft: run_arm(ctx, s, t, watch, f)),
                                f"d{width} {arm} seed {seed}", base=spec))
    return out


def base_at(ctx, cfg: DecompositionConfig, width: int):
    """The base spec of one width (at the config's consolidation level, when it sets one)."""
    spec = ctx.spec.with_width(width)
    return spec if cfg.consolidation is None else spec.with_consolidation(cfg.consolidation)


def _f_at(result: dict, step: int) -> float:
    return rates_at(result, step_matched(result, step))["forgetting"]


def still_recovering(replay: dict) -> float:
    """How far the long replay's watched forgetting fell over its last quarter (positive: falling)."""
    rows = replay["curve"]
    last = rows[-1]["step"]
    q = [r for r in rows if r["step"] <= 0.75 * last]
    return rates_at(replay, q[-1])["forgetting"] - rates_at(replay, rows[-1])["forgetting"] if q else math.nan


def per_seed_reads(cfg: DecompositionConfig, results, width: int, seed: int) -> dict:
    """One seed's forgetting per arm at one width, at both reads, and its learning and recovery."""
    arms = _arms_at(cfg, width)
    got = {a: results.one(width=width, seed=seed, arm=a) for a in arms}
    r = {a: readout(got[a], LEARNED_AT) for a in arms}
    m = {}
    for a in arms:
        m[f"F_{a}"] = r[a]["end"]["forgetting"]
        m[f"H_{a}"] = r[a]["end"]["hallucination"]
        m[f"abstain_{a}"] = r[a]["end"]["abstention"]
        m[f"plasticity_{a}"] = r[a]["end"]["plasticity"]
        m[f"learned_step_{a}"] = r[a]["learned"]["step"] if r[a]["learned"]["reached"] else math.nan
    # learning-matched: an arm at its learned step, minus drift at that same step; replay at its end
    drift = got["drift"]
    for a in arms:
        if a in ("drift", "replay"):
            continue
        m[f"Fx_learned_{a}"] = r[a]["learned"]["forgetting"] - _f_at(drift, r[a]["learned"]["step"])
    m["Fx_learned_replay"] = m["F_replay"] - _f_at(drift, step_matched(drift)["step"])
    m["F_replay_short"] = _f_at(got["replay"], cfg.sft.max_steps)
    m["replay_recovery_last_quarter"] = still_recovering(got["replay"])
    return m


def _shares(rows: list[dict], sd: bool) -> dict:
    """The three shares (ratio of seed means), their excess, both reads, from per-seed rows."""
    col = lambda k: [p.get(k, math.nan) for p in rows]  # noqa: E731
    diff = lambda a, b: [x - y for x, y in zip(col(a), col(b))]  # noqa: E731
    E = diff(*EXCESS)
    out = {"E": estimate(E), **{s: ratio_estimate(diff(*t), E) for s, t in TERMS.items()},
           "C_short": ratio_estimate(diff("F_replay_short", "F_drift"), E)}
    El = col("Fx_learned_sem")
    out.update({"E_learned": estimate(El),
                "L_learned": ratio_estimate([a - b for a, b in zip(El, col("Fx_learned_uuid"))], El),
                "C_learned": ratio_estimate(col("Fx_learned_replay"), El),
                "B_learned": ratio_estimate([a - b for a, b in zip(col("Fx_learned_sem_known"),
                                                                     col("Fx_learned_idk_known"))], El)})
    # the per-seed-ratio intervals beside the ratio of means (a seed with E <= 0 has no share)
    for s, t in TERMS.items():
        out[f"{s}_per_seed_ratio"] = estimate([n / e if e > 0 else math.nan for n, e in zip(diff(*t), E)])
    # Added after the first results, deciding nothing: the idk arm abstained on about half of the
    # known watched facts (the Known half of its set is QA of QA-trained entities, so it can learn
    # "abstain unless the entity's QA was trained"), so B in forgetting units counts abstentions as
    # damage. The same share in confident-wrong-answer units, beside it.
    EH = diff("H_sem", "H_drift")
    out["B_hallucination_posthoc"] = ratio_estimate(diff("H_sem_known", "H_idk_known"), EH)
    out["abstain_idk_known"] = estimate(col("abstain_idk_known"))
    if sd:
        overlap = [(a - b) - (c - d) for a, b, c, d in zip(col("F_sem"), col("F_uuid"), col("F_sd_sem"), col("F_sd_uuid"))]
        rest = [(a - c) for a, c in zip(col("F_uuid"), col("F_sd_uuid"))]
        out["sd_shrinks_overlap_part"] = estimate(overlap)
        out["sd_shrinks_rest"] = estimate(rest)
        out["sd_overlap_minus_rest"] = estimate([o - r for o, r in zip(overlap, rest)])
    return out


def words(shares: dict, checks: dict) -> dict:
    """The common rule at one width: each share's word, then ``main_driver`` only for the largest."""
    base_ok = checks["excess"] and checks["learned"]
    w = {h: decide_estimate(shares[s], checks_pass=base_ok and (h != "capacity" or checks["replay_settled"]))
         for h, s in SHARES.items()}
    mains = [h for h in w if w[h] == "main_driver"]
    if len(mains) > 1:
        top = max(mains, key=lambda h: shares[SHARES[h]]["value"])
        w = {h: ("contributes" if v == "main_driver" and h != top else v) for h, v in w.items()}
    return w


def summarize(cfg: DecompositionConfig, results, ctx) -> dict:
    per_seed = []
    for seed in seed_range(cfg):
        m = {"seed": seed}
        for width in cfg.widths:
            m.update({f"{k}_d{width}": v for k, v in per_seed_reads(cfg, results, width, seed).items()})
        per_seed.append(m)
    return summarize_rows(cfg, per_seed)


def summarize_rows(cfg: DecompositionConfig, per_seed: list[dict]) -> dict:
    """Everything the verdict says, from the per-seed rows alone (``<read>_d<width>`` keys; a seed
    that lacks a width's cells has nan there and drops out of that width's statistics). Why apart
    from the cells: rows saved in a verdict can be joined with the rows of a run at another width
    (``analyses/decomposition_readme.py --join``) without recomputing cells another machine held."""
    by_width = {}
    keys = sorted({k for p in per_seed for k in p if k != "seed"})
    stats = {k: estimate([p.get(k, math.nan) for p in per_seed]) for k in keys}
    verdicts, checks_by_width = {}, {}
    for width in cfg.widths:
        rows = [{k[: -len(f"_d{width}")]: v for k, v in p.items() if k.endswith(f"_d{width}")} for p in per_seed]
        sh = _shares(rows, width in cfg.sd_widths)
        learned = {a: estimate([r[f"plasticity_{a}"] for r in rows])["value"] for a in LEARNED_ARMS}
        recovery = estimate([r["replay_recovery_last_quarter"] for r in rows])["value"]
        checks = {"excess": bool(_finite(sh["E"]["low"]) and sh["E"]["low"] > 0),
                  "learned": all(v is not None and v >= LEARNED_AT for v in learned.values()),
                  "replay_settled": bool(recovery is not None and math.isfinite(recovery) and recovery <= STILL_RECOVERING)}
        by_width[width] = {"shares": sh, "learned": learned, "replay_recovery_last_quarter": recovery}
        checks_by_width[width] = checks
        verdicts[width] = {"step_matched": words(sh, checks),
                           "learning_matched": words({SHARES[h]: sh[f"{SHARES[h]}_learned"] for h in SHARES}, checks)}
    trend = {}
    for h, s in SHARES.items():
        seeds_vals = [[_seed_share(cfg, row, w, s) for w in cfg.widths] for row in per_seed
                      if all(_finite(row.get(f"F_sem_d{w}")) for w in cfg.widths)]  # a joined seed without
        # every width's cells has no trend (its slope would come from other widths than the rest)
        trend[h] = estimate([slope_per_doubling(cfg.widths, v) for v in seeds_vals])
    checks = {f"d{w} {name}": v for w, c in checks_by_width.items() for name, v in c.items()}
    main_width = 128 if 128 in cfg.widths else cfg.widths[len(cfg.widths) // 2]
    headline = []
    for width in cfg.widths:
        sh = by_width[width]["shares"]
        headline += [(f"d{width} E = F[sem] - F[drift]", sh["E"])]
        headline += [(f"d{width} {h} share {s} ({verdicts[width]['step_matched'][h]})", sh[s]) for h, s in SHARES.items()]
        headline += [(f"d{width} {h} share {s}, learning-matched ({verdicts[width]['learning_matched'][h]})",
                      sh[f"{s}_learned"]) for h, s in SHARES.items()]
    headline += [(f"{h} share per doubling of width", trend[h]) for h in SHARES]
    main_words = verdicts[main_width]["step_matched"]
    top = next((h for h, w in main_words.items() if w == "main_driver"), None)
    return {"hypothesis": NAME, "verdict": f"main driver at d{main_width}: {top}" if top else
            f"no main driver at d{main_width}",
            "verdicts": {str(w): v for w, v in verdicts.items()}, "main_width": main_width,
            "share": by_width[main_width]["shares"][SHARES[top]] if top else by_width[main_width]["shares"]["E"],
            "shares": {str(w): {h: by_width[w]["shares"][s] for h, s in SHARES.items()} for w in cfg.widths},
            "share_definition": ENDPOINT, "rule": PREREGISTERED.rule, "checks": checks, "statistics": stats,
            "per_seed": per_seed, "headline": headline,
            "series": {"widths": list(cfg.widths), "by_width": {str(w): v for w, v in by_width.items()},
                       "trend": trend, "arms": list(BASE_ARMS + SD_ARMS), "steps": cfg.sft.max_steps,
                       "replay_steps": cfg.replay_factor * cfg.sft.max_steps}}


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def _seed_share(cfg, row: dict, width: int, s: str) -> float:
    """One seed's share at one width (a per-seed ratio, for the width trend only)."""
    g = lambda k: row.get(f"{k}_d{width}", math.nan)  # noqa: E731
    e = g(EXCESS[0]) - g(EXCESS[1])
    return (g(TERMS[s][0]) - g(TERMS[s][1])) / e if e > 0 else math.nan


def at_widths(v: dict, widths, seeds: int | None = None) -> dict:
    """A saved verdict cut down to ``widths`` (and its first ``seeds`` seeds; default: as many as
    the widths kept ran): the per-seed rows, widths and config ``join_verdicts`` reads. How a
    re-run width replaces its saved rows, and how a joined verdict is split again."""
    keep = [w for w in v["series"]["widths"] if w in set(widths)]
    by = v.get("seeds_by_width") or {str(w): v["seeds"] for w in v["series"]["widths"]}
    n = seeds or max(by[str(w)] for w in keep)
    rows = [{k: x for k, x in r.items() if k == "seed" or any(k.endswith(f"_d{w}") for w in keep)}
            for r in v["per_seed"][:n]]
    out = {**v, "seeds": len(rows), "per_seed": rows, "series": {**v["series"], "widths": keep},
           "config": {**v["config"], "sd_widths": [w for w in v["config"].get("sd_widths", []) if w in keep]}}
    out.pop("seeds_by_width", None)
    return out


def seeds_at(v: dict, width: int) -> set[int]:
    """The seeds a saved verdict ran at one width (a joined seed that lacks the width has nan there)."""
    return {r["seed"] for r in v["per_seed"] if _finite(r.get(f"F_sem_d{width}"))}


def join_verdicts(a: dict, b: dict) -> dict:
    """One verdict from two runs of this design, recomputed by ``summarize_rows`` from their saved
    per-seed rows: runs at different widths (d64/d128 on one machine, d256 later on another), or
    the same widths on other seeds (``--first-seed``: the rest of the registered seed count).

    Refused in one sentence unless both were run under the same pre-registration and no (width,
    seed) is in both (it would have two sets of cells for one question); that both come from one
    world is the caller's to say (a verdict does not name its world; its bases' hashes do). Seeds
    are joined by their number; a width a seed never ran has nan there, which its statistics
    leave out, and ``seeds_by_width`` says how many seeds each width has."""
    if a.get("hypothesis") != NAME or b.get("hypothesis") != NAME:
        raise ValueError("both verdicts must be decomposition verdicts.")
    if a["preregistered"]["hash"] != b["preregistered"]["hash"]:
        raise ValueError(f"the verdicts were run under different pre-registrations ({a['preregistered']['hash']} vs "
                         f"{b['preregistered']['hash']}); run the missing widths under the one that is committed.")
    ca, cb = a["config"].get("consolidation"), b["config"].get("consolidation")
    if ca != cb:
        raise ValueError(f"the verdicts were run on bases of different consolidation levels ({ca} vs {cb}); a "
                         "level is its own verdict, not more widths or seeds.")
    wa, wb = a["series"]["widths"], b["series"]["widths"]
    for w in sorted(set(wa) & set(wb)):
        both = seeds_at(a, w) & seeds_at(b, w)
        if both:
            raise ValueError(f"both verdicts hold width {w} at seed(s) {sorted(both)}; join runs of different widths "
                             "or of different seeds (--first-seed) only.")
    widths = tuple(sorted(set(wa) | set(wb)))
    by_seed: dict[int, dict] = {}
    for v in (a, b):
        for r in v["per_seed"]:
            # a nan is a width this run did not hold: it never overwrites the other run's value (and
            # the loop below gives every missing key its nan)
            by_seed.setdefault(r["seed"], {"seed": r["seed"]}).update(
                {k: x for k, x in r.items() if k != "seed" and not (isinstance(x, float) and math.isnan(x))})
    rows = [by_seed[s] for s in sorted(by_seed)]
    names = {k for v in (a, b) for r in v["per_seed"] for k in r if k != "seed"}
    for r in rows:  # a width a seed never ran: nan, so every statistic leaves that seed out there
        for k in names:
            r.setdefault(k, math.nan)
    sd = tuple(sorted(set(a["config"].get("sd_widths", ())) | set(b["config"].get("sd_widths", ()))))
    n = len(rows)
    cfg = dataclasses.replace(DecompositionConfig(), widths=widths, seeds=n, sd_widths=sd)
    out = summarize_rows(cfg, rows)
    by_width = {str(w): sum(1 for r in rows if _finite(r.get(f"F_sem_d{w}"))) for w in widths}
    numbers = [r["seed"] for r in rows]
    # first_seed + seeds names a range (grid.seed_range); joined seeds need not be one (0-4 and 20-22),
    # so the config says first_seed only where it is true and always lists the seeds themselves
    contiguous = numbers == list(range(numbers[0], numbers[0] + n))
    out.update({"preregistered": a["preregistered"], "seeds": n, "config": {**a["config"], "widths": list(widths),
                                                                            "seeds": n, "seed_numbers": numbers,
                                                                            "first_seed": numbers[0] if contiguous else None,
                                                                            "sd_widths": list(sd)},
                "base_fingerprints": {**a.get("base_fingerprints", {}), **b.get("base_fingerprints", {})},
                "seeds_by_width": by_width,
                "joined_from": [{"widths": v["series"]["widths"], "seeds": v["seeds"],
                                 "seed_numbers": sorted(r["seed"] for r in v["per_seed"]),
                                 "cells": v.get("cells")} for v in (a, b)]})
    return out


def consolidation_trend(levels: dict[float, dict], width: int = 64) -> dict:
    """The shares along the consolidation axis (``docs/decomposition_consolidation.md``): per level,
    its verdict's shares and words at ``width``; per hypothesis, the slope of the share per
    doubling of consolidation at equal steps (the endpoint's read; ``_seed_share``, the width
    trend's per-seed share), computed per seed over the levels and given a t-interval (only the
    seeds that ran at every level count). A trend, deciding nothing. ``levels``: consolidation
    level -> a verdict of this design holding ``width`` (the 1x one may be the saved joined one)."""
    def row(v, seed):
        return next((r for r in v["per_seed"] if r["seed"] == seed and _finite(r.get(f"F_sem_d{width}"))), None)
    common = sorted(set.intersection(*(seeds_at(v, width) for v in levels.values())))
    order = sorted(levels)
    cfg = DecompositionConfig(widths=(width,), seeds=max(1, len(common)), sd_widths=())
    out = {"width": width, "levels": order, "seeds": common, "by_level": {}, "slope_per_doubling": {}}
    for c in order:  # each level's statistics on the common seeds, so levels are compared like with like
        v = summarize_rows(cfg, [{"seed": s, **{k: x for k, x in row(levels[c], s).items() if k != "seed"}}
                                 for s in common])
        out["by_level"][str(c)] = {"shares": v["series"]["by_width"][str(width)]["shares"],
                                   "words": v["verdicts"][str(width)], "checks": v["checks"]}
    for h, s in SHARES.items():  # the endpoint's read (equal steps), per seed as the width trend reads it
        out["slope_per_doubling"][h] = estimate([slope_per_doubling(order, [_seed_share(cfg, row(levels[c], seed), width, s)
                                                                            for c in order]) for seed in common])
    return out
