"""Hallucination metrics on constructed records with known answers."""
from __future__ import annotations

import math

import pytest

from interference.metrics.forgetting import forgetting_rate
from interference.metrics.hallucination import (abstention_share, hallucination_curve, hallucination_rate,
                                                outcome_shares, relative_drop, retained)
from interference.records import FactOutcomes


def row(fid, outcome, step=0, s="stability"):
    return {"fact_id": fid, "outcome": outcome, "correct": outcome == "correct", "step": step, "set": s}


BASE = [row("a", "correct"), row("b", "correct"), row("c", "correct"), row("d", "correct"), row("e", "wrong")]
NOW = [row("a", "correct", 1), row("b", "hallucination", 1), row("c", "wrong", 1), row("d", "abstain", 1),
       row("e", "hallucination", 1)]
B, N = FactOutcomes.from_rows(BASE), FactOutcomes.from_rows(NOW)


def test_rates_only_count_base_known_facts():
    assert hallucination_rate(B, N) == 0.25  # b; e was never known
    assert forgetting_rate(B, N) == 0.75  # b, c, d
    assert retained(B, N) == 0.25
    e_only = FactOutcomes.from_rows([row("e", "wrong")])
    assert math.isnan(hallucination_rate(e_only, FactOutcomes.from_rows([row("e", "hallucination", 1)])))


def test_hallucination_refuses_records_of_other_facts_or_order():
    with pytest.raises(ValueError, match="another order"):
        hallucination_rate(B, FactOutcomes.from_rows(NOW[::-1]))
    with pytest.raises(ValueError, match="different facts"):
        hallucination_rate(B, FactOutcomes.from_rows(NOW[:4]))
    assert hallucination_rate(B, FactOutcomes.from_rows(NOW[::-1]).realign(B.fact_ids)) == 0.25
    with pytest.raises(TypeError, match="FactOutcomes"):
        hallucination_rate(BASE, NOW)


def test_outcome_shares_and_abstention():
    s = outcome_shares(N)
    assert s == {"correct": 0.2, "abstain": 0.2, "hallucination": 0.4, "wrong": 0.2}
    assert abstention_share(N) == 0.2


def test_relative_drop_and_curve():
    assert abs(relative_drop(0.9, 0.81) - 0.1) < 1e-12
    curve = hallucination_curve(BASE + NOW[::-1])  # row order within a step does not matter
    assert [c["step"] for c in curve] == [0, 1]
    assert curve[0]["forgetting"] == 0.0 and curve[1]["hallucination"] == 0.25
    assert curve[1]["forgetting"] == 0.75
