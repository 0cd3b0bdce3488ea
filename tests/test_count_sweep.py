"""capacity's uuid-key count sweep on one synthetic width (``hypotheses.count_sweep``): the same
grid and summary as the real-model sweep, its training sets built from the world."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from interference.hypotheses import capacity_sweep as cs
from interference.hypotheses import count_sweep as sweep
from interference.hypotheses.grid import ResultSet


def test_the_sets_are_uuid_entities_of_every_relation_and_known_qa_nobody_watches(quick_base, quick_spec):
    world = quick_base[2]
    ctx = SimpleNamespace(world=world, spec=quick_spec)
    cfg = sweep.CountSweepConfig.quick()
    src = sweep.source(cfg, ctx)
    new = src.new_facts(8, 0)
    rels = world.config.relations
    assert len(new) == 8 * len(rels) and {f.relation for f in new} == set(rels)
    known_subjects = {f.subject for f in world.facts(world.split("pretrain_qa") + world.split("statement_only"))}
    assert not {f.subject for f in new} & known_subjects  # never-seen entities
    assert src.new_facts(8, 0) == new and src.new_facts(8, 1) != new  # a seed's set, and only its own
    drift = src.drift_facts(len(new), 0)
    assert len(drift) == len(new) and not {f.fact_id for f in drift} & {f.fact_id for f in src.watch}
    assert src.corpus == "pretraining" and src.base is quick_spec  # width None: the context's own base


def test_the_width_picks_the_pinned_base_of_that_width(quick_spec):
    ctx = SimpleNamespace(world=None, spec=quick_spec)
    src = sweep.source(sweep.CountSweepConfig(width=48), SimpleNamespace(world=_NoWorld(), spec=quick_spec))
    assert src.base.model.d_model == 48 and src.base.hash() != ctx.spec.hash()


class _NoWorld:
    config = SimpleNamespace(relations=("born_in",))

    def split(self, _):
        return []

    def facts(self, _):
        return []


def _curve(forget: float, plasticity: float = 1.0) -> dict:
    return {"curve": [{"step": 0, "forgetting": 0.0, "hallucination": 0.0, "abstention": 0.0, "plasticity": 0.0},
                      {"step": 50, "forgetting": forget, "hallucination": forget, "abstention": 0.0,
                       "plasticity": plasticity}]}


def test_the_endpoint_is_the_pooled_share_that_joint_training_keeps(quick_spec, monkeypatch):
    """Constructed cells: joint keeps (0.02 + 0.07) of SFT's (0.08 + 0.28) excess over drift, P = 0.25."""
    cfg = sweep.CountSweepConfig(seeds=2, counts=(2, 8), width=None)
    forget = {2: {"sft": 0.10, "joint": 0.04, "drift": 0.02}, 8: {"sft": 0.30, "joint": 0.09, "drift": 0.02}}
    src = cs.SweepSource(base=quick_spec, watch=[], relations=("a", "b"), n_params=lambda: 1e4, corpus="pretraining",
                         new_facts=lambda c, s: [], drift_facts=lambda n, s: [])
    monkeypatch.setattr(cs, "rates_at", lambda res, row: row)
    monkeypatch.setattr(cs, "readout", lambda res, at: {"end": res["curve"][-1],
                                                        "learned": {"reached": True, "step": 50,
                                                                    "forgetting": res["curve"][-1]["forgetting"]}})
    cells = [SimpleNamespace(key={"seed": s, "arm": a, "count": c}) for s in range(2) for c in (2, 8)
             for a in cs.ARMS]
    results = ResultSet(cells, [_curve(forget[c.key["count"]][c.key["arm"]]) for c in cells])
    v = cs.sweep_summary(cfg, results, src)
    assert v["endpoint"]["value"] == pytest.approx(0.25, abs=1e-9)
    assert v["verdict"] == "contributes"  # lo = 0.25: above 0, below main_at 0.5
    assert v["statistics"]["slope_count"]["value"] == pytest.approx((0.28 - 0.08) / 2, abs=1e-9)


def test_the_quick_cli_run_writes_its_verdict_and_figure(tmp_path):
    from interference.run_hypothesis import main
    assert main(["capacity_sweep", "--quick", "--counts", "4,2", "--epochs", "12", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    v = json.loads((tmp_path / "capacity_sweep" / "verdict.json").read_text())
    assert v["hypothesis"] == "capacity_sweep" and v["design"] == "count_sweep" and v["seeds"] == 2
    assert v["preregistered"]["hash"] == sweep.PREREGISTERED.hash() != cs.PREREGISTERED.hash()
    assert set(v["series"]["sweep"]) == {"2", "4"} and v["config"]["epochs"] == 12
    assert v["verdict"] in {"main_driver", "contributes", "not_supported", "inconclusive"}
    assert (tmp_path / "capacity_sweep" / "capacity.png").stat().st_size > 10_000
