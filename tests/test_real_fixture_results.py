"""The hypothesis runners' default-settings runs on the committed fixture that knows facts
(``analyses/results/real_fixture/*.json``, written by ``analyses/real_fixture.py``) end in a
verdict, not ``inconclusive``, and are runs of *this* fixture and *these* designs (localized is decided by
its pre-registered 20-seed confirmation, ``localized_confirm``; its 5-seed pilot is kept beside it, and
``localized_default`` is the default command at the 20-seed real-model default).

The runs take 30-70 minutes each on 2 shared cores, too long for the suite, so the suite checks
the saved results instead: that each names the fixture's current weights and data (the base
hash), the design's current pre-registration (its hash), a verdict that is not inconclusive with
its required checks passing where the rule requires them, and a Known-only drift well below the
effect it reports. A remade fixture or a changed design fails here until the runs are redone.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAVED = REPO / "analyses" / "results" / "real_fixture"
FIXTURE = REPO / "tests" / "fixtures" / "knowing"
POSITIVE = ("main_driver", "contributes")


def _saved(name: str) -> dict:
    f = SAVED / f"{name}.json"
    if not f.exists():
        pytest.fail(f"{f} is missing; run the fixture's {name} at default settings and save it with "
                    "analyses/real_fixture.py")
    return json.loads(f.read_text())


def _module(name: str):
    from interference.hypotheses import behavior_cloning, capacity_sweep, localized
    return {"localized": localized, "localized_confirm": localized, "localized_default": localized,
            "behavior_cloning": behavior_cloning, "capacity_sweep": capacity_sweep}[name]


def _effect(name: str, r: dict) -> float:
    """The size of what the run measured, in the unit Known-only drift is in (a share of watched facts)."""
    rows = dict((k, v) for k, v in r["headline"])
    if name.startswith("localized"):  # forgetting of the targets beyond the rest, share2 at equal learning
        return rows["targets - rest, share2"]["value"]
    if name == "behavior_cloning":  # the reference arm's rise in confident wrong answers
        return r["watched_forgetting_by_arm"]["reference"]
    return max(r["watched_forgetting_by_arm"].values())


SAVED_RUNS = ["localized", "localized_confirm", "localized_default", "behavior_cloning"]
# The run that decides each design on the fixture. localized's default-settings run (seeds 0-4, dose
# slope 0.021 [-0.009, 0.051], inconclusive) became the pilot of a confirmation pre-registered in
# docs/localized_fixture_confirmation.md before it ran: 20 fresh seeds, the pilot not pooled.
DECIDING = ["localized_confirm", "behavior_cloning"]
# The runs of the default command (no seed, arm or rate flags): localized's at the real-model
# default of docs/localized_fixture_default.md (20 seeds; seeds 0-4 are the pilot's, so it is not
# new evidence, the confirmation decides), behavior_cloning's as it always was.
DEFAULT_SETTINGS = ["localized_default", "behavior_cloning"]
# Strict: a saved run that meets it makes this XPASS, which fails until the marker goes.
DRIFT_NOT_YET = {"localized_confirm": "Known-only drift at the rule's rate (0.027) is not below half of the share2 "
                                      "arm's targets - rest (0.037 / 2), as the pre-registration said it would not be",
                 "localized_default": "the rule's drift is the same sweep's (0.027; one seed, 200 watched facts, 250 "
                                      "steps) against targets - rest 0.034, as docs/localized_fixture_default.md said; "
                                      "read at the effect's step on the same seeds it passes (the test below)"}


@pytest.mark.parametrize("name", SAVED_RUNS)
def test_the_saved_fixture_runs_are_of_this_fixture_and_these_designs(name):
    from interference.hypotheses.real_world import RealBase
    from interference.real_data import RealSpec
    r = _saved(name)
    assert r["preregistered_hash"] == _module(name).PREREGISTERED.hash(), "the design changed since the saved run"
    base = RealBase(RealSpec(model=str(FIXTURE / "model"), data=str(FIXTURE / "data")), "fp32")
    assert r["base_hash"] == base.hash(), "the fixture changed since the saved run"
    assert r["seeds"] >= 5 and r["learning_rate"]["chosen_by"] == "rule"


def test_the_confirmation_ran_fresh_seeds_at_the_pilots_rate():
    pilot, confirm = _saved("localized"), _saved("localized_confirm")
    first = confirm["config"]["first_seed"]
    assert first >= (pilot["config"].get("first_seed") or 0) + pilot["seeds"], "the confirmation reused pilot seeds"
    assert confirm["seeds"] == 20  # the count docs/localized_fixture_confirmation.md fixed
    assert confirm["learning_rate"]["value"] == pilot["learning_rate"]["value"]
    assert confirm["config"]["n_targets"] == pilot["config"]["n_targets"]


@pytest.mark.parametrize("name", sorted(set(DECIDING) | set(DEFAULT_SETTINGS)))
def test_the_fixture_runs_end_in_a_verdict(name):
    r = _saved(name)
    assert r["verdict"] != "inconclusive", (r["verdict"], r["endpoint"])
    if name.startswith("localized") or r["verdict"] in POSITIVE:  # where the rule makes its checks required
        assert all(r["checks"].values()), r["checks"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=DRIFT_NOT_YET[n], strict=True))
                                  if n in DRIFT_NOT_YET else n for n in sorted(set(DECIDING) | set(DEFAULT_SETTINGS))])
def test_known_only_drift_is_well_below_the_effect(name):
    """The rate rule's drift (one seed, a sample of the watched facts, the whole step budget)."""
    r = _saved(name)
    assert r["known_only_drift"] < 0.5 * _effect(name, r), (r["known_only_drift"], _effect(name, r))


def test_the_default_run_is_the_default_command():
    """No seed, arm or rate flag: the real-model seed count on the core arms and the Known-only
    cells, the secondary arms on their fewer seeds, none left out, seeds from 0, the rule's rate."""
    from interference.hypotheses import localized as loc
    from interference.hypotheses.real_world import REAL_SEEDS, SECONDARY_SEEDS
    r = _saved("localized_default")
    assert r["seeds"] == REAL_SEEDS and (r["config"].get("first_seed") or 0) == 0 and not r["left_out_arms"]
    assert r["seeds_by_arm"] == {a: REAL_SEEDS if a in loc.CORE else SECONDARY_SEEDS for a in loc.ARMS}
    assert r["known_only_drift_matched"]["matched"]["n"] == REAL_SEEDS
    assert "--seeds" not in r["command"] and "--leave-out" not in r["command"] and "--lr" not in r["command"]


def test_known_only_drift_read_at_the_effects_step_is_well_below_it():
    """The check of docs/localized_fixture_default.md, pre-registered before the run: the drift
    read per seed where the share2 effect is read (its equal-learning step), against half that effect."""
    r = _saved("localized_default")
    m = r["known_only_drift_matched"]["matched"]["value"]
    assert m < 0.5 * _effect("localized_default", r), (m, _effect("localized_default", r))
