"""interference.figures: every plot renders from a small saved result (no training), the CLI
refuses unknown names, the registry and figures/README.md agree, missing inputs name their command,
and the geometry / ROC helpers give known answers on constructed cases."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from interference.figures import FIGURES
from interference.figures.__main__ import main
from interference.figures.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def est(v, h=0.05, n=3):
    return {"value": v, "low": v - h, "high": v + h, "n": n}


def curve(vals):
    return [est(v) for v in vals]


STEPS = [0, 10, 20, 30]


def _decomposition_verdict() -> dict:
    """A decomposition verdict.json in the shape the runner writes (two widths)."""
    words = {"step_matched": {"localized": "main_driver", "capacity": "not_supported", "behavior_cloning": "contributes"}}
    words["learning_matched"] = words["step_matched"]
    shares = {k: est(v) for k, v in (("E", .03), ("L", .7), ("C", .02), ("B", .2), ("L_learned", .6),
                                     ("C_learned", .05), ("B_learned", .1))}
    stats = {f"F_{a}_d{w}": est(f) for w in (64, 128) for a, f in (("sem", .05), ("uuid", .02), ("drift", .01))}
    return {"hypothesis": "decomposition", "verdict": "main driver at d128: localized", "seeds": 3,
            "verdicts": {"64": words, "128": words}, "statistics": stats,
            "series": {"widths": [64, 128], "by_width": {"64": {"shares": shares}, "128": {"shares": shares}}}}


def _fixtures() -> dict[str, dict]:
    """A small, hand-written data dict per figure, in the shape its compute step saves."""
    arms = {m: {"method": m, "steps": STEPS, "stability": curve([1, .9, .85, .8]), "plasticity": curve([0, .5, .9, 1]),
                "task": curve([1, .95, .95, .9])} for m in ("sft", "self_distill")}
    grid = np.linspace(-0.5, 1.5, 5).tolist()
    acc = (np.add.outer(np.linspace(1, 0.2, 5), np.linspace(0, 0.3, 5))).clip(0, 1).tolist()
    path = {"steps": [0, 10, 20], "a": [0, .5, 1], "b": [0, .05, 0], "off_plane": [0, .1, .1]}
    shares = {"embed": est(.1), "attn.0": est(.4), "mlp.0": est(.3), "attn.1": est(-.1), "mlp.1": est(.2),
              "norm.0": est(0), "norm": est(0), "unembed": est(.05)}
    return {
        "curves": {"arms": arms, "seeds": 3},
        "tradeoff": {"seeds": 3, "points": [
            {"label": "sft", "method": "sft", "strength": None, "plasticity": est(1), "stability": est(.9), "task": est(.9)},
            {"label": "self_distill@1", "method": "self_distill", "strength": 1, "plasticity": est(1),
             "stability": est(.95), "task": est(.95)},
            {"label": "self_distill@4", "method": "self_distill", "strength": 4, "plasticity": est(.6),
             "stability": est(.97), "task": est(.96)}]},
        "hallucination": {"seeds": 3, "fractions": [
            {"label": f"u{f}", "method": "sft", "unknown_fraction": f, "hallucination": est(.1 * f + .01),
             "forgetting": est(.2 * f + .02), "plasticity": est(1), "steps": STEPS,
             "stability_curve": curve([1, .95, .9 - .1 * f, .85 - .1 * f])} for f in (0, .5, 1)]},
        "freezing": {"seeds": 3, "arms": [
            {"label": lab, "groups": g, "n_trainable": 1000, "task": est(.9), "plasticity": est(p), "stability": est(s)}
            for lab, g, p, s in (("all", "all", 1, .9), ("attention only", "attn", .9, .85))]},
        "param_space": {"a": grid, "b": grid, "accuracy": {"stability": acc, "task": acc, "plasticity": acc},
                        "gold_logprob": {"stability": acc, "task": acc, "plasticity": acc},
                        "paths": {"sft": path, "self_distill": {**path, "b": [0, .3, .6]}},
                        "ends": {"sft": [1, 0], "self_distill": [1, .6]}, "threshold": 0.9,
                        "n_facts": {"stability": 30, "task": 10, "plasticity": 20},
                        "update_norm": {"sft": 1, "self_distill": 1.2}, "cos_updates": 0.8, "seed": 0},
        "localized": {"seeds": 3, "layer": 1,
                      "overlap": {"arm": "sft", "layer": 1, "forgetting": est(.2), "auroc_overlap": est(.55),
                                  "auroc_fragility": est(.8),
                                  "bins": [{"overlap": o, "forgetting": est(f)} for o, f in ((.1, .1), (.3, .2), (.5, .3))]},
                      "drift": {m: {"method": m, "steps": STEPS, "drift": curve([0, .02, .04, .05])} for m in ("sft", "self_distill")},
                      "designed": {"arms": ["share0", "share2", "uuid"], "targets": [est(.1), est(.3), est(.05)],
                                   "rest": [est(.1), est(.12), est(.04)], "verdict": "contributes",
                                   "estimate": est(.05), "seeds": 3}},
        "attribution": {"seeds": 3, "arms": {"sft": {"method": "sft", "forgetting": est(.1), "share": shares}}},
        "capacity": {"curves": {"d128": {"uuid": [[100, est(.02)], [300, est(.03)]],
                                         "semantic": [[100, est(.1)], [300, est(.2)]]}},
                     "statistics": {"joint_forgetting": est(.01)}, "verdict": "contributes", "estimate": est(.2),
                     "endpoint": "forgetting at fixed count across widths", "seeds": 3},
        "forecast": {"auroc": {"forecast": est(.9), "fragility": est(.8), "random": est(.5)},
                     "roc": {"forecast": {"fpr": [0, .1, 1], "tpr": [0, .8, 1]}, "fragility": {"fpr": [0, .3, 1], "tpr": [0, .7, 1]}},
                     "deciles": [{"bin": k, "risk": k / 10, "forgotten": k / 20, "n": 10} for k in range(10)],
                     "n_facts": 100, "base_rate": 0.2, "method": "sft", "seeds": 5},
        "decomposition": _decomposition_verdict(),
        "hypotheses": {"missing": [], "hypotheses": {
            n: {"verdict": v, "estimate": est(s), "endpoint": "an endpoint", "predictions": {}, "seeds": 5,
                "main_at": .5, "negligible_below": .1, "hash": "abc"}
            for n, v, s in (("capacity", "contributes", .2), ("localized", "main_driver", .7))}},
    }


def test_fixtures_cover_the_registry():
    assert set(_fixtures()) == set(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_each_plot_renders_from_saved_result(name, tmp_path):
    saved = tmp_path / f"{name}.json"
    saved.write_text(json.dumps(_fixtures()[name]))
    paths = FIGURES[name].plot(json.loads(saved.read_text()), tmp_path / "out")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert paths[0].stat().st_size > 10_000  # something was drawn, not an empty canvas


def test_unknown_figure_lists_valid_names(capsys):
    assert main(["--only", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and all(n in err for n in FIGURES)
    assert err.count("\n") == 1  # one sentence


def test_readme_lists_exactly_the_registered_figures():
    text = (ROOT / "figures" / "README.md").read_text()
    listed = set(re.findall(r"--only (\w+)", text))
    assert listed == set(FIGURES)
    for f in FIGURES.values():
        assert f"{f.name}.png" in text


@pytest.mark.parametrize("quick", [False, True])
def test_every_figure_has_a_config(quick):
    for name, fig in FIGURES.items():
        cfg = load_config(fig.config, name, quick)
        assert type(cfg).from_dict(cfg.to_dict()) == cfg  # JSON round trip


@pytest.mark.parametrize("cfg, says", [({"arms": [{"label": "sft"}], "seedz": 3}, "seedz"),
                                       ({"arms": [], "seeds": 3}, "no arms"),
                                       ({"arms": [{"label": "a"}, {"label": "a"}]}, "repeat")])
def test_bad_config_is_refused_in_one_sentence(tmp_path, capsys, cfg, says):
    (tmp_path / "curves.json").write_text(json.dumps(cfg))
    assert main(["--only", "curves", "--configs", str(tmp_path), "--plan"]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_missing_results_name_their_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    for n in ("capacity", "forecast", "hypotheses"):
        (cfg / f"{n}.json").write_text(json.dumps({"hypotheses_dir": "hyp", "forecast_dir": "fc"}))
    rc = main(["--only", "capacity,forecast,hypotheses", "--configs", str(cfg), "--out", "figs", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "python -m interference.run_hypothesis capacity --out hyp" in out
    assert "run `python -m interference.forecast --sft-data RUN_DIR --evaluate --out fc` first (RUN_DIR:" in out
    assert "3 skipped" in out and not (tmp_path / "figs" / "capacity.png").exists()


def test_localized_renders_without_designed_results(tmp_path):
    d = _fixtures()["localized"]
    d["designed"] = {"missing": "no hyp/localized/verdict.json; run `python -m interference.run_hypothesis localized` first."}
    assert FIGURES["localized"].plot(d, tmp_path)[0].exists()


@pytest.mark.parametrize("keys", [
    {"learned/share2/forget_targets": .3, "learned/share2/forget_rest": .1, "final/share2/forget_targets": .9,
     "learned/uuid/forget_targets": .05, "learned/uuid/forget_rest": .04, "learned/share2/contrast": .2},
    {"forgetting_lookalike_targets": .3, "forgetting_lookalike_rest": .1, "forgetting_uuid_targets": .05,
     "forgetting_uuid_rest": .04, "targets_minus_rest_lookalike": .2}])
def test_designed_intervention_reads_both_verdict_layouts(tmp_path, keys):
    from interference.figures.inputs import designed_intervention
    (tmp_path / "localized").mkdir()
    stats = {k: est(v) for k, v in keys.items()}
    (tmp_path / "localized" / "verdict.json").write_text(json.dumps({"verdict": "contributes", "statistics": stats}))
    d = designed_intervention(tmp_path)
    assert len(d["arms"]) == 2 and d["arms"][1] == "uuid"
    assert [e["value"] for e in d["targets"]] == [.3, .05] and [e["value"] for e in d["rest"]] == [.1, .04]


def test_capacity_series_reads_the_grid_and_the_key_style_layouts(tmp_path):
    from interference.figures.inputs import capacity_series
    (tmp_path / "capacity").mkdir()
    cell = lambda f: {"forgetting_sft": est(f), "forgetting_joint": est(f / 4), "forgetting_drift": est(.01)}  # noqa: E731
    v = {"verdict": "contributes", "endpoint": est(.3), "statistics": {"P": est(.3)},
         "series": {"facts_per_entity": 4, "grid": {"default": {"d64": {"25": cell(.2), "100": cell(.4)}}},
                    "forgetting_by_count": {"d64": {"semantic": {"25": est(.5)}}}}}
    (tmp_path / "capacity" / "verdict.json").write_text(json.dumps(v))
    d = capacity_series(tmp_path)
    assert [c for c, _ in d["curves"]["d64"]["sft"]] == [100, 400]  # entities x facts per entity, sorted
    assert d["curves"]["d64"]["joint (rehearsal)"][1][1]["value"] == pytest.approx(.1)
    assert d["curves"]["d64"]["semantic keys"][0][0] == 100
    assert d["estimate"]["value"] == .3


def test_forecast_reads_the_evaluate_layout_and_per_fact_rows(tmp_path):
    from interference.figures.inputs import forecast
    from interference.metrics.stats import auroc
    au = {p: {"mean": m, "lo": m - .02, "hi": m + .02, "n": 2} for p, m in (("forecast", .9), ("fragility", .8))}
    cal = [{"predicted": p, "observed": p * 0.9, "n": 10} for p in (.05, .2, .6)]
    per_seed = {"forecast": [{"auroc": .88}, {"auroc": .92}], "fragility": [{"auroc": .8}, {"auroc": .8}]}
    fc = {"auroc": au, "config": {"seeds": 2}, "methods": {"sft": {"calibration": cal, "n_facts": [15, 15], "per_seed": per_seed,
                                                                  "table": {"base_rate": {"forecast": {"mean": .25}}}}}}
    (tmp_path / "forecast.json").write_text(json.dumps(fc))
    d = forecast(tmp_path)
    assert d["auroc"]["forecast"] == {"value": .9, "low": .88, "high": .92, "n": 2}
    assert [x["forgotten"] for x in d["deciles"]] == pytest.approx([.045, .18, .54]) and d["n_facts"] == 30
    assert d["roc"] == {} and d["base_rate"] == .25  # no per-fact scores: panel (a) shows AUROC per seed
    assert d["per_seed_auroc"] == {"forecast": [.88, .92], "fragility": [.8, .8]}
    assert FIGURES["forecast"].plot(d, tmp_path / "out")[0].exists()
    rows = [{"fact_id": str(i), "forgotten": i % 3 == 0, "forecast": (i % 3 == 0) + i / 100, "fragility": i / 100}
            for i in range(30)]
    (tmp_path / "forecast.json").write_text(json.dumps({**fc, "per_fact": rows}))
    d = forecast(tmp_path)
    fpr, tpr = d["roc"]["fragility"]["fpr"], d["roc"]["fragility"]["tpr"]
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc([r["fragility"] for r in rows], [r["forgotten"] for r in rows]))
    r = d["roc"]["forecast"]
    assert (0.0, 1.0) in zip(r["fpr"], r["tpr"])  # the forecast column separates perfectly: (fpr 0, tpr 1) is on its curve


def test_forecast_draws_roc_and_deciles_from_per_fact_jsonl_beside_it(tmp_path):
    """The evaluate layout: forecast.json without per-fact rows, per_fact.jsonl beside it with
    rows of two methods and two seeds; only the first method's rows draw its curves."""
    from interference.figures.inputs import forecast
    from interference.metrics.stats import auroc
    au = {p: {"mean": .8, "lo": .7, "hi": .9, "n": 2} for p in ("forecast", "fragility", "random")}
    (tmp_path / "forecast.json").write_text(json.dumps({"auroc": au, "config": {"seeds": 2},
                                                        "methods": {"sft": {"n_facts": [20, 20]}, "freeze": {}}}))
    rows = [{"method": m, "seed": k, "fact_id": f"f{i}", "forgotten": i < 5, "forecast": -i if m == "sft" else i,
             "fragility": (i * 7) % 20, "random": None if i == 0 else i % 3}
            for m in ("sft", "freeze") for k in range(2) for i in range(20)]
    (tmp_path / "per_fact.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = forecast(tmp_path)
    sft = [r for r in rows if r["method"] == "sft"]
    r = d["roc"]["forecast"]
    assert (0.0, 1.0) in zip(r["fpr"], r["tpr"])  # sft's forecast separates perfectly; freeze's rows would invert it
    f = d["roc"]["fragility"]
    assert np.trapezoid(f["tpr"], f["fpr"]) == pytest.approx(auroc([x["fragility"] for x in sft], [x["forgotten"] for x in sft]))
    assert len(d["deciles"]) == 10 and d["deciles"][-1]["forgotten"] == 1.0 and d["deciles"][0]["forgotten"] == 0.0
    assert d["base_rate"] == .25
    assert FIGURES["forecast"].plot(d, tmp_path / "out")[0].exists()


# ------------------------------------------------------------------ helpers with known answers
def test_roc_curve_area_equals_auroc_with_ties():
    from interference.figures.inputs import roc_curve
    from interference.metrics.stats import auroc
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    y = rng.random(200) < 0.3 + 0.1 * s
    fpr, tpr = roc_curve(s, y)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(s, y), rel=1e-12)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1


def test_risk_deciles_are_sorted_by_risk():
    from interference.figures.inputs import risk_deciles
    dec = risk_deciles(np.arange(100), np.arange(100) >= 90)
    assert [d["forgotten"] for d in dec] == [0.0] * 9 + [1.0]
    assert sum(d["n"] for d in dec) == 100


def test_plane_projection_recovers_known_coordinates():
    from interference.figures.compute_mechanism import plane_basis, project
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, generator=g), torch.randn(50, generator=g)
    u, v = plane_basis(a, b)
    assert float(u @ v) == pytest.approx(0, abs=1e-12) and float(u.norm()) == pytest.approx(1, rel=1e-12)
    pts = torch.stack([0.3 * a + 0.5 * b, a, torch.zeros(50)])
    x, y, off = project(pts, u, v)
    assert off == pytest.approx([0, 0, 0], abs=1e-6)
    assert (x[1], y[1]) == pytest.approx((float(a.norm()), 0.0), abs=1e-5)  # a lies on the first axis
    perp = torch.linalg.svd(torch.stack([a, b]).double(), full_matrices=True).Vh[2].float()  # orthogonal to both
    assert project(perp[None], u, v)[2][0] == pytest.approx(1, rel=1e-4)
    with pytest.raises(ValueError, match="collinear"):
        plane_basis(a, 2 * a)


def test_attribution_matrix_places_units():
    from interference.figures.plot_mechanism import attribution_matrix
    rows, cols, m = attribution_matrix({"embed": 0.1, "attn.0": 0.4, "mlp.1": 0.2, "norm": 0.0})
    assert rows == ["embed", "attn", "mlp", "norm"] and cols == ["-", "0", "1"]
    assert m[rows.index("attn"), cols.index("0")] == 0.4 and m[rows.index("mlp"), cols.index("1")] == 0.2
    assert np.isnan(m[rows.index("attn"), cols.index("1")])


def test_produce_finds_only_the_missing_verdicts(tmp_path):
    from interference.figures.config import ResultsConfig
    from interference.figures.produce import missing_hypotheses
    (tmp_path / "localized").mkdir()
    (tmp_path / "localized" / "verdict.json").write_text("{}")
    cfg = ResultsConfig(hypotheses_dir=str(tmp_path))
    got = missing_hypotheses({"capacity": cfg, "hypotheses": cfg, "localized": cfg, "forecast": cfg})
    assert got == {str(tmp_path): ["capacity", "behavior_cloning"]}
    dec = ResultsConfig(decomposition_dir=str(tmp_path / "dec"))
    assert missing_hypotheses({"decomposition": dec}) == {str(tmp_path / "dec"): ["decomposition"]}


def test_produce_hands_jobs_to_the_hypothesis_runner(tmp_path, monkeypatch):
    import types

    import interference.hypotheses.runner as runner
    from interference.figures.config import ResultsConfig
    from interference.figures.produce import produce
    calls = []
    monkeypatch.setattr(runner, "run", lambda name, **kw: calls.append((name, kw)) or {"verdict": "inconclusive"})
    cfg = ResultsConfig(hypotheses_dir=str(tmp_path))
    lines = produce({"capacity": cfg}, types.SimpleNamespace(quick=True), jobs=2)
    assert [c[0] for c in calls] == ["capacity"] and calls[0][1]["jobs"] == 2 and calls[0][1]["quick"] is True
    assert len(lines) == 1 and "--jobs 2" in lines[0] and lines[0].endswith("inconclusive")
    calls.clear()
    produce({"capacity": cfg}, types.SimpleNamespace(quick=True))
    assert calls[0][1]["jobs"] == 1  # one job: the runner's own default

def test_hypotheses_figure_keeps_its_size_when_a_threshold_is_off_scale(tmp_path):
    # a slope endpoint of 0.02 registered with main_at 0.5: the threshold's label was drawn at x = 0.5,
    # far outside the axes, and the tight bounding box grew the PNG to 8555 px wide
    from PIL import Image

    from interference.figures.plot_results import plot_hypotheses
    est = {"value": 0.02, "low": 0.005, "high": 0.04, "n": 5}
    d = {"hypotheses": {n: {"estimate": est, "verdict": "contributes", "main_at": 0.5, "negligible_below": 0.01,
                            "seeds": 5, "endpoint": "a slope"} for n in ("a", "b")}}
    png = next(p for p in plot_hypotheses(d, tmp_path) if str(p).endswith(".png"))
    w, h = Image.open(png).size
    assert w < 2000 and h < 1500, (w, h)


def test_the_decomposition_figure_is_drawn_from_a_saved_verdict(tmp_path):
    """The registry's decomposition figure reads runs' verdict.json and draws the shares per width."""
    import json
    from interference.figures import FIGURES, FigureContext
    from interference.figures.config import ResultsConfig
    from interference.figures.runs import MissingInput, RunCache
    fig = FIGURES["decomposition"]
    ctx = FigureContext(cache=RunCache(tmp_path / "runs", True), quick=True)
    cfg = ResultsConfig(decomposition_dir=str(tmp_path / "none"))
    with pytest.raises(MissingInput, match="run_hypothesis decomposition"):
        fig.compute(cfg, ctx)
    v = _decomposition_verdict()
    d = tmp_path / "dec" / "decomposition"
    d.mkdir(parents=True)
    (d / "verdict.json").write_text(json.dumps(v))
    data = fig.compute(ResultsConfig(decomposition_dir=str(tmp_path / "dec")), ctx)
    paths = fig.plot(data, tmp_path / "out")
    assert [p.name for p in paths] == ["decomposition.png", "decomposition.pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_a_figure_redrawn_from_the_same_numbers_is_the_same_file(tmp_path):
    """No creation date in the PDF: redrawing a README figure from saved results changes no
    committed file unless its numbers changed."""
    import time

    import matplotlib.pyplot as plt

    from interference.io import save_figure
    digests = []
    for _ in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1, 3])
        digests.append([p.read_bytes() for p in save_figure(fig, tmp_path, "same")])
        time.sleep(1.1)  # a creation date would differ by now
    assert digests[0] == digests[1]
