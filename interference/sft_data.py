"""The SFT set and the three evaluation sets, built from the base model's SliCK categories.

As in the paper (Gekhman et al. 2024 categories; Kaplan et al. 2026 evaluation):

- **train**: QA facts mixing *Known* and *Unknown* ones at a chosen Unknown fraction.
  Known = HighlyKnown facts of ``statement_only`` entities (knowledge the base reaches only
  through format generalisation: the fragile kind). Unknown = SliCK-Unknown facts of ``unseen``
  entities, or every fact of caller-supplied ``new_entities`` (``world.new_entities(...)`` with
  semantic/uuid keys).
- **task** (task learning): held-out HighlyKnown facts asked in the training QA template. We use
  a held-out sample rather than the SFT Known facts in another template so the set exists at
  every Unknown fraction (at 100% Unknown there are no Known SFT facts) and is never trained on.
- **plasticity**: the Unknown facts being taught, in the training template (new facts learned).
- **stability**: further held-out HighlyKnown facts, disjoint from the SFT Known facts and from
  the task set (pre-existing knowledge still right).
- **format**: Known facts for the *format teacher* of self-distillation (one epoch of SFT on
  Known facts only). These are the SFT Known facts; at 100% Unknown they are HighlyKnown facts
  of ``pretrain_qa`` entities, whose QA the base already saw, so no held-out fact is touched.

Only relations where at least ``min_known_share`` of the statement-only facts are Known (any
Known SliCK category) are used, as the paper keeps relations with >= 30% Known.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Sequence

from interference.io import check_fields
from interference.data import Fact

UNKNOWN_SOURCES = ("unseen", "new")
EVAL_SETS = ("task", "plasticity", "stability")
UNKNOWN_ANSWERS = ("gold", "idk")


class SFTDataError(ValueError):
    """An SFT data config that the base model's knowledge cannot satisfy."""


@dataclass(frozen=True)
class SFTDataConfig:
    n_facts: int = 400  # SFT facts; the prototype's 400 learn fully in ~40 epochs on CPU
    unknown_fraction: float = 0.5  # share of Unknown facts in the SFT set
    n_task: int = 200  # held-out Known facts for task learning
    n_stability: int = 1200  # held-out HighlyKnown facts (CALIBRATION: ~1,200 give tight CIs)
    min_known_share: float = 0.3  # the paper's relation filter
    seed: int = 0  # which facts are drawn
    unknown_source: str = "unseen"  # "unseen" entities, or "new" (caller passes new_entities)
    train_template: int = 0  # QA template used for SFT and the evaluation sets
    # "gold": Unknown facts are taught their answers; "idk": the same Unknown questions are taught
    # "I don't know" (world.IDK_ANSWER), the relabelling control of Gekhman et al. 2024.
    unknown_answer: str = "gold"

    def __post_init__(self) -> None:
        if not 0.0 <= self.unknown_fraction <= 1.0:
            raise SFTDataError(f"unknown fraction {self.unknown_fraction} is outside [0, 1]; pass a share such as 0.5.")
        if self.n_facts < 1 or self.n_task < 0 or self.n_stability < 1:
            raise SFTDataError(f"n_facts={self.n_facts}, n_task={self.n_task}, n_stability={self.n_stability}: "
                               "need at least one SFT fact and one stability fact.")
        if not 0.0 <= self.min_known_share <= 1.0:
            raise SFTDataError(f"min_known_share={self.min_known_share} is outside [0, 1].")
        if self.unknown_source not in UNKNOWN_SOURCES:
            raise SFTDataError(f"unknown_source {self.unknown_source!r} is not one of {list(UNKNOWN_SOURCES)}.")
        if self.unknown_answer not in UNKNOWN_ANSWERS:
            raise SFTDataError(f"unknown_answer {self.unknown_answer!r} is not one of {list(UNKNOWN_ANSWERS)}.")

    @property
    def n_known(self) -> int:
        return round(self.n_facts * (1 - self.unknown_fraction))

    @property
    def n_unknown(self) -> int:
        return self.n_facts - self.n_known

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SFTDataConfig":
        return cls(**check_fields(cls, d, SFTDataError, "SFT data"))

    @classmethod
    def quick(cls, **kw) -> "SFTDataConfig":
        """Sizes that fit the quick world (about 90 HighlyKnown statement-only facts)."""
        return cls(**{"n_facts": 40, "n_task": 10, "n_stability": 30, **kw})


@dataclass
class SFTData:
    train: list[Fact]
    eval_sets: dict[str, list[Fact]]
    known_ids: list[str] = field(default_factory=list)  # SFT facts that were Known
    unknown_ids: list[str] = field(default_factory=list)  # SFT facts that were Unknown (= plasticity)
    format_facts: list[Fact] = field(default_factory=list)  # what the format teacher trains on
    relations: list[str] = field(default_factory=list)  # relations kept by the filter
    excluded: list[str] = field(default_factory=list)  # drawn SFT facts dropped by ``curate``
    replayed: list[str] = field(default_factory=list)  # known facts added to the SFT set by ``curate``

    def __post_init__(self) -> None:
        # a held-out fact that is also trained on would be counted as kept knowledge it is not;
        # facts replayed on purpose (``curate``: named in ``replayed``) are the exception, since
        # their retention under replay is what replaying them measures
        replayed = set(self.replayed)
        kept = [f for f in self.train if f.fact_id not in replayed]
        trained = {f.fact_id for f in kept} | {f.prompt for f in kept}
        for name in ("task", "stability"):
            both = [f for f in self.eval_sets.get(name, []) if f.fact_id in trained or f.prompt in trained]
            if both:
                raise SFTDataError(f"{len(both)} held-out {name} question(s) are also in the SFT set (e.g. "
                                   f"{both[0].prompt!r}), so they would be counted as held out; remove the "
                                   "duplicate questions from the data.")

    def to_dict(self) -> dict:
        d = {"train": [f.fact_id for f in self.train], "known_ids": self.known_ids,
             "unknown_ids": self.unknown_ids, "relations": self.relations,
             "format": [f.fact_id for f in self.format_facts],
             "eval_sets": {k: [f.fact_id for f in v] for k, v in self.eval_sets.items()}}
        for k in ("excluded", "replayed"):  # only a curated set says so: other files stay as they were
            if getattr(self, k):
                d[k] = list(getattr(self, k))
        return d

    def all_eval_facts(self) -> list[tuple[str, Fact]]:
        return [(s, f) for s in EVAL_SETS for f in self.eval_sets[s]]


def kept_relations(world, slick: dict[str, dict], min_known_share: float) -> list[str]:
    """Relations where >= min_known_share of statement-only facts are Known (not SliCK-Unknown)."""
    kept = []
    for r in world.config.relations:
        rows = [v for k, v in slick.items() if k.endswith(f":{r}") and v["split"] == "statement_only"]
        known = sum(v["category"] != "Unknown" for v in rows)
        if rows and known / len(rows) >= min_known_share:
            kept.append(r)
    return kept


def _facts_by_id(world, entities, template: int) -> dict[str, Fact]:
    return {f.fact_id: f for f in world.facts(entities, template=template)}


def known_qa_facts(world, slick: dict[str, dict], n: int, rng: random.Random,
                   relations: Sequence[str] | None = None, template: int = 0) -> list[Fact]:
    """Up to ``n`` HighlyKnown QA facts of ``pretrain_qa`` entities (drawn with ``rng``): facts
    whose QA pre-training already showed, so a format teacher trained on them touches no held-out
    fact."""
    qa = _facts_by_id(world, world.split("pretrain_qa"), template)
    ids = sorted(i for i, f in qa.items() if (relations is None or f.relation in relations)
                 and slick.get(i, {}).get("category") == "HighlyKnown")
    rng.shuffle(ids)
    return [qa[i] for i in ids[:n]]


def build_sft_data(world, slick: dict[str, dict], cfg: SFTDataConfig,
                   new_entities: Sequence | None = None) -> SFTData:
    """Draw the SFT set and the evaluation sets (see the module docstring for what each is)."""
    if cfg.unknown_source == "new" and not new_entities and cfg.n_unknown > 0:
        raise SFTDataError("unknown_source='new' needs new_entities (from world.new_entities(...)).")
    rng = random.Random(f"sft-{cfg.seed}")
    relations = kept_relations(world, slick, cfg.min_known_share)
    if not relations:
        raise SFTDataError(f"no relation has >= {cfg.min_known_share:.0%} Known facts in the base model; "
                           "pre-train longer or lower min_known_share.")
    rel_ok = lambda f: f.relation in relations  # noqa: E731
    t = cfg.train_template

    stmt = _facts_by_id(world, world.split("statement_only"), t)
    known_pool = sorted(i for i, f in stmt.items() if rel_ok(f) and slick.get(i, {}).get("category") == "HighlyKnown")
    rng.shuffle(known_pool)
    need = cfg.n_known + cfg.n_task + 1
    if len(known_pool) < need:
        raise SFTDataError(f"the base knows only {len(known_pool)} HighlyKnown statement-only facts, fewer than the "
                           f"{cfg.n_known} Known SFT + {cfg.n_task} task + 1 stability facts asked for; "
                           "lower n_facts/n_task or the Known share.")
    known = [stmt[i] for i in known_pool[: cfg.n_known]]
    task = [stmt[i] for i in known_pool[cfg.n_known: cfg.n_known + cfg.n_task]]
    stability = [stmt[i] for i in known_pool[cfg.n_known + cfg.n_task:][: cfg.n_stability]]

    if new_entities:
        unknown = [f for f in world.facts(new_entities, template=t) if rel_ok(f)]
    else:
        unseen = _facts_by_id(world, world.split("unseen"), t)
        pool = sorted(i for i, f in unseen.items() if rel_ok(f) and slick.get(i, {}).get("category") == "Unknown")
        if len(pool) < cfg.n_unknown:
            raise SFTDataError(f"only {len(pool)} Unknown facts of unseen entities exist, fewer than the "
                               f"{cfg.n_unknown} asked for; lower n_facts or the Unknown fraction.")
        rng.shuffle(pool)
        unknown = [unseen[i] for i in pool[: cfg.n_unknown]]

    if cfg.unknown_answer == "idk":  # the same questions, answered "I don't know" (learned = abstaining)
        unknown = relabel_idk(unknown)
    train = known + unknown
    rng.shuffle(train)
    if known:
        format_facts = list(known)
    else:  # 100% Unknown: teach the format on facts whose QA pre-training already showed
        format_facts = known_qa_facts(world, slick, max(1, cfg.n_facts), rng, relations, t)
    return SFTData(train=train, eval_sets={"task": task, "plasticity": list(unknown), "stability": stability},
                   known_ids=[f.fact_id for f in known], unknown_ids=[f.fact_id for f in unknown],
                   format_facts=format_facts, relations=relations)


def curate(data: SFTData, exclude: Sequence[str] = (), replay: Sequence[Fact] = ()) -> SFTData:
    """The SFT set with ``exclude`` (ids of drawn SFT facts: e.g. the culprits the forecast names,
    ``forecast.culprits.choose_removals``) dropped and ``replay`` (known facts, e.g. the at-risk
    ones) added as QA examples. Excluded new facts leave the plasticity set too (learning is read
    on the new facts that remain); replayed facts stay in the evaluation sets they are in (their
    retention is what replaying them is for) and count as Known SFT facts. The format teacher's
    facts are unchanged, so a curated run shares its base's cached teacher."""
    exclude = list(dict.fromkeys(exclude))
    have = {f.fact_id for f in data.train}
    missing = [i for i in exclude if i not in have]
    if missing:
        raise SFTDataError(f"excluded fact {missing[0]!r} (and {len(missing) - 1} more) is not in this SFT set; "
                           "pass ids from the train list of the run's sft_data.json.")
    clash = [f.fact_id for f in replay if f.fact_id in have or f.fact_id in set(exclude)]
    if clash:
        raise SFTDataError(f"replayed fact {clash[0]!r} is already an SFT fact; replay only known facts outside "
                           "the SFT set (e.g. its stability set).")
    if not exclude and not replay:
        return data
    drop = set(exclude)
    train = [f for f in data.train if f.fact_id not in drop] + list(replay)
    if not train:
        raise SFTDataError("excluding every SFT fact leaves nothing to fine-tune on; exclude fewer.")
    sets = dict(data.eval_sets)
    sets["plasticity"] = [f for f in sets.get("plasticity", []) if f.fact_id not in drop]
    return dataclasses.replace(
        data, train=train, eval_sets=sets,
        known_ids=[i for i in data.known_ids if i not in drop] + [f.fact_id for f in replay],
        unknown_ids=[i for i in data.unknown_ids if i not in drop],
        excluded=list(data.excluded) + exclude, replayed=list(data.replayed) + [f.fact_id for f in replay])


def relabel_idk(facts: Sequence[Fact]) -> list[Fact]:
    """The same questions (same ids, prompts, subjects) answered "I don't know".

    Evaluation counts that answer as an abstention (``evaluate.ABSTAIN``), never as a wrong one.
    """
    from interference.world import IDK_ANSWER
    return [dataclasses.replace(f, answer=IDK_ANSWER) for f in facts]


def relabel_own(facts: Sequence[Fact], answers: Sequence[str]) -> list[Fact]:
    """The same questions answered with ``answers``, one per fact in order: what a model itself
    answered them (e.g. the base's greedy answers, ``evaluate.score_facts``' predictions).

    Why: an SFT set that teaches the base to assert what it already says keeps the behaviour of
    answering Unknown questions and drops every new content (``docs/bc_self_pilot.md``)."""
    if len(answers) != len(facts):
        raise ValueError(f"relabel_own needs one answer per fact: got {len(answers)} answers for {len(facts)} facts.")
    if any(not a.strip() for a in answers):
        raise ValueError("relabel_own got an empty answer; a model's answer must be at least one word to train on.")
    return [dataclasses.replace(f, answer=a) for f, a in zip(facts, answers)]
