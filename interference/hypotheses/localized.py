"""Localized interference: SFT forgets the existing facts whose representations the new facts share.

Pre-registered experiment (written and committed before it was run; ``PREREGISTERED`` below is
the text that ``verdict.json`` records, hashed into every cell key).

Per seed, on one base: a *target* set T of 100 statement-only entities with three-piece names
(the watched, pre-existing knowledge); one value set V (for each target and relation, a value that
differs from the target's own); and one fine-tuning run per arm, each teaching 100 new entities x
every relation with exactly the values V (so every arm teaches the same answers; only the keys
differ). The j-th new entity is built on target j:

=================  ==============================================================================
arm                new names
=================  ==============================================================================
share0             3 pieces, none of target j's (the dose-0 point: T is just a label)
share1_first       target j's 1st piece kept, the other two replaced
share1_second      target j's 2nd piece kept
share1_last        target j's 3rd (last) piece kept (secondary: the subject's last token)
share2             target j's 1st and 2nd pieces kept, the last replaced
uuid               uuid keys (pieces pre-training uses elsewhere; shares nothing with T): null arm
disjoint           pieces that occur in pre-training only in non-watched entities
*_frozen           share2 / uuid / disjoint with embedding and unembedding frozen (trains attn,
                   mlp, norm): does the interference need the shared token rows?
share2_distill     share2 with self-distillation to the format teacher
=================  ==============================================================================

Every arm trains the same number of steps (``steps``, lr 3e-4, batch 32) and is read twice:
*learning-matched* at the first evaluation where it answers >= 95% of its new facts, and
*step-matched* at the last step. Both are reported; the primary read is learning-matched.

Statistics, per seed then mean and 95% t-interval over seeds:

1. Primary endpoint: ``dose_slope`` = least-squares slope, over the nested arms share0 /
   share1_first / share2 (0 / 1 / 2 shared pieces, kept positions {} / {1st} / {1st, 2nd}), of the
   within-run contrast d = forgetting(T) - forgetting(rest), rest = every other statement-only
   fact of the same run. No control run is subtracted.
2. Which piece: d[share1_first] - d[share1_second] (and d[share1_last]).
3. Signature: among forgotten targets, the share answering their look-alike's value (share2) vs
   the share answering the same value in the uuid arm, which taught the same values (null arm).
4. Activation patching (fine-tuned model at the last step): the base model's subject-last-token
   state (``blocks.{i}.hook_resid_post``) patched into the fine-tuned model on forgotten facts;
   restored share vs patching a random other entity's base state (same relation, same prompt
   length), per layer, in share2 (targets and rest) and in uuid.
   Added after the registered run (issue 19's review: the subject's last token is the one share2
   piece its look-alike does *not* share, and only one layer was read), reported beside it and
   deciding nothing: the same patch at the embedding output and after every block, at three
   position sets (every subject token; the shared-piece positions alone, not applicable in uuid;
   the last token), with a second control, the mean base state of the other entities of the same
   relation and prompt length; own minus each control per layer with its t-interval over seeds
   (``patch/{arm}/{group}/{set}/...`` in the statistics, described under ``patching``).
5. Per-fact predictors: leave-one-seed-out AUROC for "forgotten" of the fragility baseline (the
   fact's own base gold log-prob) and of baseline + each a-priori predictor (max cosine to the new
   facts at the middle layer, most shared name pieces, gradient conflict), in share0 (natural
   overlap) and share2.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np

from interference.fictitious import lookalike_pieces
from interference.hypotheses.grid import Cell, seed_range
from interference.hypotheses.prereg import Preregistration
from interference.train import SFTSpec
from interference.probes import subject_states
from interference.hypotheses.localized_summary import DOSE, MAIN_EXCESS, NEGLIGIBLE_SLOPE, PREDICT_ARMS
from interference.metrics.overlap import overlap_with_new

NAME = "localized"

ENDPOINT = ("dose_slope: least-squares slope, over arms sharing 0 / 1 / 2 name pieces with their target "
            "(kept positions {} / {1st} / {1st, 2nd}; same values, same steps), of the within-run contrast "
            "forgetting(targets) - forgetting(all other watched facts), read at equal learning (first "
            "evaluation with >= 95% of the new facts right); mean and 95% t-interval over seeds.")
PREDICTIONS = {
    "localized": "dose_slope > 0 and the mean contrast rises monotonically 0 -> 1 -> 2 shared pieces; "
                 "forgotten targets take their look-alike's value more often than in the uuid null arm.",
    "capacity": "dose_slope = 0: every arm stores the same number of new facts in the same parameters, so "
                "the damage does not depend on which entity the new names resemble.",
    "behavior_cloning": "dose_slope = 0: learning to answer Unknown questions damages known facts whatever "
                        "entity the new examples imitate; no value capture beyond the uuid null arm.",
}
RULE = (f"With [lo, hi] the 95% t-interval of dose_slope over seeds: not_supported if hi < {NEGLIGIBLE_SLOPE}; "
        "inconclusive if fewer than 2 seeds, a non-finite interval, or a required check fails (every SFT "
        "arm of the dose series reaches >= 95% of its new facts within the step budget); main_driver if "
        "lo > 0, the mean contrast is monotone over 0/1/2 pieces and the lower bound of the share2 excess "
        f"(forgetting(T) - forgetting(rest)) / forgetting(T) is >= {MAIN_EXCESS}; contributes if lo > 0 and "
        "monotone; inconclusive otherwise.")
PREREGISTERED = Preregistration(endpoint=ENDPOINT, predictions=PREDICTIONS, rule=RULE, main_at=MAIN_EXCESS,
                                negligible_below=NEGLIGIBLE_SLOPE)


@dataclass(frozen=True)
class LocalizedArm:
    keys: str  # semantic | uuid | disjoint
    keep: tuple[int, ...] | None = None  # semantic: which target positions the new name keeps
    method: str = "sft"
    options: tuple = ()  # method options as (name, value) pairs (hashable, JSON-able)


FROZEN_EMBED = (("groups", "attn,mlp,norm"),)  # what trains when embedding + unembedding are frozen
ARMS: dict[str, LocalizedArm] = {
    "share0": LocalizedArm("semantic", ()),
    "share1_first": LocalizedArm("semantic", (0,)),
    "share1_second": LocalizedArm("semantic", (1,)),
    "share1_last": LocalizedArm("semantic", (2,)),
    "share2": LocalizedArm("semantic", (0, 1)),
    "uuid": LocalizedArm("uuid"),
    "disjoint": LocalizedArm("disjoint"),
    "share2_frozen": LocalizedArm("semantic", (0, 1), "freeze", FROZEN_EMBED),
    "uuid_frozen": LocalizedArm("uuid", None, "freeze", FROZEN_EMBED),
    "disjoint_frozen": LocalizedArm("disjoint", None, "freeze", FROZEN_EMBED),
    "share2_distill": LocalizedArm("semantic", (0, 1), "self_distill", (("teacher", "format"),)),
}
CORE = ("share0", "share1_first", "share2", "uuid")  # dose series + the signature's null arm
PATCH_ARMS = ("share2", "uuid")  # arms whose forgotten facts are patched


@dataclass(frozen=True)
class LocalizedConfig:
    seeds: int = 5
    first_seed: int = 0  # seeds first_seed .. first_seed + seeds - 1 (grid.seed_range)
    n_targets: int = 100  # three-piece statement-only entities; 100 x 4 relations = 400 new facts
    steps: int = 250  # every arm trains this many steps (~3x the 75 that 400 look-alike facts needed at lr 3e-4)
    sft: SFTSpec = SFTSpec(lr=3e-4, batch_size=32, eval_every=10, learned_at=0.95)
    arms: tuple[str, ...] = tuple(ARMS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "LocalizedConfig":
        return cls(seeds=2, n_targets=12, steps=60,
                   sft=SFTSpec(lr=1e-3, batch_size=16, eval_every=10, learned_at=0.95),
                   arms=("share0", "share1_first", "share1_second", "share2", "uuid", "share2_frozen"))


def config(quick: bool = False) -> LocalizedConfig:
    return LocalizedConfig.quick() if quick else LocalizedConfig()


# ------------------------------------------------------------------ entities
def targets_of(world, n: int, seed: int):
    """``n`` statement-only entities with three-piece names, chosen by seed."""
    pool = [e for e in world.split("statement_only") if len(e.pieces) == 3]
    if len(pool) < n:
        raise ValueError(f"the world has {len(pool)} three-piece statement-only entities, fewer than the "
                         f"{n} targets asked for; lower n_targets.")
    return random.Random(f"localized-targets-{seed}").sample(pool, n)


def value_set(world, targets, seed: int) -> list[tuple[tuple[str, str], ...]]:
    """Per target: (relation, value) pairs, each value differing from the target's own, so a
    target that takes its look-alike's value is always wrong (the signature is identifiable)."""
    from interference.world import RELATIONS
    rng = random.Random(f"localized-values-{seed}")
    out = []
    for t in targets:
        pairs = []
        for r in world.config.relations:
            vocab = [v for v in world.values[RELATIONS[r][0]] if v != t.value(r)]
            pairs.append((r, rng.choice(vocab)))
        out.append(tuple(pairs))
    return out


def lookalikes(world, targets, keep: tuple[int, ...], values, seed: int, arm_index: int):
    """New semantic entities: the j-th keeps target j's pieces at positions ``keep`` and fills the
    other positions with pieces not in target j's name; no name collides with an existing one."""
    from interference.world import Entity
    rng = random.Random(f"localized-names-{seed}-{keep}")
    taken = {e.pieces for e in world.entities}
    base_id = 50_000_000 + 1_000_000 * arm_index + 1_000 * (seed % 1000)
    out = []
    for j, (t, vals) in enumerate(zip(targets, values)):
        others = [p for p in world.pieces if p not in t.pieces]
        pieces = lookalike_pieces(t.pieces, keep, [others] * len(t.pieces), rng, taken, max_tries=10_000)
        if pieces is None:
            raise ValueError(f"no free look-alike name for {t.name!r}; the world needs more pieces.")
        out.append(Entity(base_id + j, pieces, "new", vals, "semantic"))
    return out


def new_entities_for(world, arm: LocalizedArm, targets, values, seed: int, arm_index: int):
    if arm.keys == "semantic":
        return lookalikes(world, targets, arm.keep, values, seed, arm_index)
    from interference.world import Entity
    carriers = [Entity(-1, (), "new", v) for v in values]
    return world.new_entities(len(targets), arm.keys, seed=7_000 + seed, values_from=carriers)


# ------------------------------------------------------------------ cells
def _key(cfg: LocalizedConfig, ctx, **kw) -> dict:
    return {"base": ctx.spec.hash(), "hypothesis": NAME,
            "cfg": {k: v for k, v in cfg.to_dict().items() if k not in ("seeds", "first_seed", "arms")}, **kw}


def cells(cfg: LocalizedConfig, ctx) -> list[Cell]:
    unknown = [a for a in cfg.arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown localized arm(s) {unknown}; choose from {list(ARMS)}.")
    out = [Cell("localized-base", _key(cfg, ctx, arm="base"), lambda: _base_eval(ctx), "base",
                base=ctx.spec)]
    # the arms the primary endpoint, the signature, patching and predictors need come first for
    # every seed, so a run cut short by the clock still has them on as many seeds as possible
    core = [a for a in CORE if a in cfg.arms]
    order = [(s, a) for s in seed_range(cfg) for a in core]
    order += [(s, a) for s in seed_range(cfg) for a in cfg.arms if a not in CORE]
    for seed, arm in order:
        out.append(Cell(f"localized-{arm}", _key(cfg, ctx, arm=arm, spec=dataclasses.asdict(ARMS[arm]), seed=seed),
                        (lambda a=arm, s=seed: _run_arm(cfg, ctx, a, s)), f"{arm} seed {seed}", base=ctx.spec))
    return out


def _watch(ctx):
    return ctx.world.facts(ctx.world.split("statement_only"))


def _base_eval(ctx) -> dict:
    from interference.evaluate import score_facts
    model, tok = ctx.base()
    res = score_facts(model, tok, _watch(ctx))
    return {"arm": "base", "fact_ids": [r.fact_id for r in res], "base_ok": [r.correct for r in res],
            "gold_logprob": [float(f"{r.gold_logprob:.6g}") for r in res]}


def _bits(mask) -> str:
    return "".join("1" if x else "0" for x in mask)


def _run_arm(cfg: LocalizedConfig, ctx, arm_name: str, seed: int) -> dict:
    from interference.hypotheses.localized_train import train_arm
    arm = ARMS[arm_name]
    model, tok = ctx.base()
    world = ctx.world
    targets = targets_of(world, cfg.n_targets, seed)
    values = value_set(world, targets, seed)
    new = new_entities_for(world, arm, targets, values, seed, list(ARMS).index(arm_name))
    train = world.facts(new)
    watch = _watch(ctx)
    res = train_arm(ctx, cfg, arm, train, watch, seed)
    rels = list(world.config.relations)
    own = {(f.entity_id, f.relation): f.fact_id for f in watch}
    pair_value = {own[(str(t.eid), r)]: dict(v)[r] for t, v in zip(targets, values) for r in rels}
    out = {"arm": arm_name, "seed": seed, "fact_ids": [f.fact_id for f in watch],
           "entity_ids": [f.entity_id for f in watch],
           "target_eids": sorted(str(t.eid) for t in targets), "pair_value": pair_value,
           "new_names": [e.name for e in new], "reads": res.reads}
    if arm_name in PATCH_ARMS:
        from interference.hypotheses.localized_train import patch_forgotten
        out["patching"] = patch_forgotten(model, res.model, tok, watch, seed, ctx.n_layers, arm.keep)
    if arm_name in PREDICT_ARMS:
        out["predictors"] = _predictors(model, tok, world, watch, train, new, ctx.n_layers)
    return out


def _predictors(model, tok, world, watch, train, new, n_layers: int) -> dict:
    """A-priori per-fact predictors at the base weights (see metrics.predictors)."""
    from interference.metrics.predictors import gradient_conflict, shared_pieces
    mid = (n_layers - 1) // 2
    bs = subject_states(model, tok, watch, [mid])
    ns = subject_states(model, tok, train, [mid])
    ov = overlap_with_new(bs, [f.relation for f in watch], ns, [f.relation for f in train]).max
    ent = {e.eid: e for e in world.entities}
    pieces = [ent[int(f.entity_id)].pieces for f in watch]
    return {"overlap_mid": np.round(ov[0], 5).tolist(),
            "shared_pieces": shared_pieces(pieces, [e.pieces for e in new]).tolist(),
            "gradient_conflict": np.round(gradient_conflict(model, tok, watch, train), 6).tolist()}


def prereg_hash() -> str:
    return PREREGISTERED.hash()


def summarize(cfg: LocalizedConfig, results: list[dict], ctx) -> dict:
    from interference.hypotheses.localized_summary import summarize as _s
    return {**_s(cfg, results, ctx), "rule": RULE}
