"""One per-fact record: what a model answered on a list of facts, keyed by fact id.

Why one type: per-fact results used to come in three shapes (``FactResult`` lists, timeline rows,
numpy masks in the hypothesis runners), matched by position with no check that the i-th entry of
one was the i-th fact of the other. ``FactOutcomes`` carries the fact ids next to the arrays, so
every comparison (``metrics.forgetting.forgetting_rate``) can check that two records hold the
same facts in the same order, and refuse otherwise; reordering is an explicit ``realign``.

Built from ``evaluate.score_facts`` results (``from_results``), from one evaluation of a run's
timeline (``from_rows``; the timeline JSONL format is unchanged), or from what a hypothesis cell
stores (its compact codec: ``from_codes``, one outcome character per fact, and ``from_mask``, a
0/1 list), so run directories and cells are read through the same record and the same
``forgetting_rate``. A cell stores its facts' outcomes in the order of its watch list (named by
the cell's ``watch_hash``); ``positional_ids`` names them by position when the ids themselves
are not stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

OUTCOME_CODES = {"correct": "c", "abstain": "a", "hallucination": "h", "wrong": "w"}
_OUTCOME_OF_CODE = {c: o for o, c in OUTCOME_CODES.items()}


def encode_outcomes(outcomes: Iterable[str]) -> str:
    """['correct', 'hallucination', ...] -> 'ch...': one character per fact, so a run's whole
    curve fits in its cell file; refuses an outcome it does not know."""
    try:
        return "".join(OUTCOME_CODES[o] for o in outcomes)
    except KeyError as e:
        raise ValueError(f"unknown outcome {e.args[0]!r}; expected one of {list(OUTCOME_CODES)}.") from None


def positional_ids(n: int) -> tuple[str, ...]:
    """Ids "#0".."#n-1" for a record stored in a known fact order without its ids."""
    return tuple(f"#{i}" for i in range(n))


@dataclass(frozen=True)
class FactOutcomes:
    """Per fact (same order in every field): id, answered right, greedy answer, log p(gold).

    ``prediction`` and ``outcome`` are None where unknown (a mask has no answers);
    ``gold_logprob`` is nan where unknown.
    """

    fact_ids: tuple[str, ...]
    correct: np.ndarray  # [n] bool
    prediction: tuple[str | None, ...]
    gold_logprob: np.ndarray  # [n] float64, nan = not measured
    outcome: tuple[str | None, ...]  # correct | abstain | hallucination | wrong (evaluate.outcome_of)

    def __post_init__(self):
        n = len(self.fact_ids)
        object.__setattr__(self, "fact_ids", tuple(str(f) for f in self.fact_ids))
        object.__setattr__(self, "correct", np.asarray(self.correct, dtype=bool).reshape(-1))
        object.__setattr__(self, "gold_logprob", np.asarray(self.gold_logprob, dtype=np.float64).reshape(-1))
        object.__setattr__(self, "prediction", tuple(self.prediction))
        object.__setattr__(self, "outcome", tuple(self.outcome))
        sizes = {len(self.correct), len(self.prediction), len(self.gold_logprob), len(self.outcome)}
        if sizes != {n}:
            raise ValueError(f"FactOutcomes: {n} fact ids but fields of lengths {sorted(sizes)}; pass one entry per fact.")
        if len(set(self.fact_ids)) != n:
            dup = next(f for f in self.fact_ids if self.fact_ids.count(f) > 1)
            raise ValueError(f"FactOutcomes: fact id {dup!r} appears twice; a record holds each fact once.")

    def __len__(self) -> int:
        return len(self.fact_ids)

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_mask(cls, fact_ids: Sequence[str], correct, prediction: Sequence[str] | None = None) -> "FactOutcomes":
        """From a boolean mask computed on the facts ``fact_ids`` (in that order)."""
        n = len(fact_ids)
        return cls(tuple(fact_ids), np.asarray(correct, dtype=bool), tuple(prediction) if prediction is not None
                   else (None,) * n, np.full(n, np.nan), (None,) * n)

    @classmethod
    def from_codes(cls, fact_ids: Sequence[str], codes: str) -> "FactOutcomes":
        """From the compact codec (``encode_outcomes``): one character per fact, in ``fact_ids`` order."""
        if len(codes) != len(fact_ids):
            raise ValueError(f"FactOutcomes.from_codes: {len(codes)} codes for {len(fact_ids)} facts; pass one per fact.")
        try:
            outcome = tuple(_OUTCOME_OF_CODE[c] for c in codes)
        except KeyError as e:
            raise ValueError(f"unknown outcome code {e.args[0]!r}; expected one of {sorted(_OUTCOME_OF_CODE)}.") from None
        n = len(fact_ids)
        return cls(tuple(fact_ids), np.array([o == "correct" for o in outcome], dtype=bool), (None,) * n,
                   np.full(n, np.nan), outcome)

    def to_codes(self) -> str:
        """The compact codec of this record's outcomes (every fact must have one)."""
        return encode_outcomes(self.outcome)

    @classmethod
    def from_results(cls, results: Sequence) -> "FactOutcomes":
        """From ``evaluate.score_facts`` results (``FactResult``s), in their order."""
        return cls(tuple(r.fact_id for r in results), np.array([r.correct for r in results], dtype=bool),
                   tuple(r.prediction for r in results), np.array([r.gold_logprob for r in results], dtype=np.float64),
                   tuple(r.outcome for r in results))

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping], step: int | None = None, set_name: str | None = None) -> "FactOutcomes":
        """From timeline rows (docs/CONTRACTS.md) of one evaluation: those at ``step`` (if given) and
        in ``set_name`` (if given), in file order. Rows of several steps for one fact are refused
        by the duplicate-id check: pick a step."""
        sel = [r for r in rows if (step is None or r["step"] == step) and (set_name is None or r["set"] == set_name)]
        lp = [r.get("gold_logprob") for r in sel]
        return cls(tuple(r["fact_id"] for r in sel), np.array([bool(r["correct"]) for r in sel], dtype=bool),
                   tuple(r.get("prediction") for r in sel),
                   np.array([np.nan if v is None else v for v in lp], dtype=np.float64),
                   tuple(r.get("outcome") for r in sel))

    @classmethod
    def base_and_final(cls, rows: Sequence[Mapping], set_name: str = "stability") -> "tuple[FactOutcomes, FactOutcomes]":
        """(at step 0, at the last step) of one run's timeline rows for ``set_name``, the second
        aligned to the first's fact ids: the pair every end-of-training forgetting rate compares."""
        last = max(r["step"] for r in rows)
        base = cls.from_rows(rows, 0, set_name)
        return base, cls.from_rows(rows, last, set_name).realign(base.fact_ids)

    # ------------------------------------------------------------ selection
    def index(self) -> dict[str, int]:
        return {f: i for i, f in enumerate(self.fact_ids)}

    def take(self, idx: Sequence[int] | np.ndarray) -> "FactOutcomes":
        idx = np.asarray(idx, dtype=int).reshape(-1)
        return FactOutcomes(tuple(self.fact_ids[i] for i in idx), self.correct[idx],
                            tuple(self.prediction[i] for i in idx), self.gold_logprob[idx],
                            tuple(self.outcome[i] for i in idx))

    def realign(self, fact_ids: Sequence[str]) -> "FactOutcomes":
        """The same record reordered (or restricted) to ``fact_ids``; refuses ids it does not hold."""
        where = self.index()
        missing = [f for f in fact_ids if f not in where]
        if missing:
            raise ValueError(f"realign: {len(missing)} fact id(s) (first {missing[0]!r}) are not in this record; "
                             "pass ids of facts it was evaluated on.")
        return self.take([where[f] for f in fact_ids])

    def select(self, where) -> "FactOutcomes":
        """The facts where ``where`` holds: a boolean mask over this record, or a collection of ids."""
        return self.take(np.flatnonzero(self.mask(where)))

    def mask(self, where) -> np.ndarray:
        """``where`` (None, a boolean mask over this record, or a collection of fact ids) as a mask."""
        if where is None:
            return np.ones(len(self), dtype=bool)
        if isinstance(where, np.ndarray) and where.dtype == bool:
            if where.shape != (len(self),):
                raise ValueError(f"where: a mask of shape {where.shape} for a record of {len(self)} facts; "
                                 "pass one entry per fact.")
            return where
        ids = set(where)
        unknown = ids - set(self.fact_ids)
        if unknown:
            raise ValueError(f"where: fact id {sorted(unknown)[0]!r} is not in this record; pass ids it holds.")
        return np.array([f in ids for f in self.fact_ids], dtype=bool)
