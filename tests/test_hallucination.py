"""Hallucination metrics on constructed rows with known answers."""
from __future__ import annotations

import math

from interference.metrics.hallucination import (abstention_share, forgetting_rate, hallucination_curve,
                                                hallucination_rate, outcome_shares, relative_drop, retained)


def row(fid, outcome, step=0, s="stability"):
    return {"fact_id": fid, "outcome": outcome, "correct": outcome == "correct", "step": step, "set": s}


BASE = [row("a", "correct"), row("b", "correct"), row("c", "correct"), row("d", "correct"), row("e", "wrong")]
NOW = [row("a", "correct", 1), row("b", "hallucination", 1), row("c", "wrong", 1), row("d", "abstain", 1),
       row("e", "hallucination", 1)]


def test_rates_only_count_base_known_facts():
    assert hallucination_rate(BASE, NOW) == 0.25  # b; e was never known
    assert forgetting_rate(BASE, NOW) == 0.75  # b, c, d
    assert retained(BASE, NOW) == 0.25
    assert math.isnan(hallucination_rate([row("e", "wrong")], NOW))


def test_outcome_shares_and_abstention():
    s = outcome_shares(NOW)
    assert s == {"correct": 0.2, "abstain": 0.2, "hallucination": 0.4, "wrong": 0.2}
    assert abstention_share(NOW) == 0.2


def test_relative_drop_and_curve():
    assert abs(relative_drop(0.9, 0.81) - 0.1) < 1e-12
    curve = hallucination_curve(BASE + NOW)
    assert [c["step"] for c in curve] == [0, 1]
    assert curve[0]["forgetting"] == 0.0 and curve[1]["hallucination"] == 0.25
