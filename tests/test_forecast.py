"""interference.forecast: the factorised gradient products equal brute-force autograd, the pure
features give known answers on constructed cases, the combiner ranks a planted signal above noise
and round-trips through JSON, and the CLI writes the tables it promises (or one sentence)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from interference.forecast import combine as C
from interference.forecast import features as F


# ---------------------------------------------------------------- gradients
def _unit_grads(model, fact, tok):
    from interference.batching import answer_loss, pack
    from interference.metrics.attribution import parameter_units
    from interference.models import model_logits
    units = parameter_units(model)
    params = dict(model.named_parameters())
    names = [n for u in units for n in units[u]]
    for n in names:
        params[n].requires_grad_(True)
    b = pack(tok, [(fact.prompt, fact.answer)], int(model.cfg.n_ctx))
    grads = torch.autograd.grad(answer_loss(model_logits(model, b.ids), b), [params[n] for n in names], allow_unused=True)
    g = dict(zip(names, grads))
    return {u: torch.cat([(g[n] if g[n] is not None else torch.zeros_like(params[n])).flatten().double() for n in ns])
            for u, ns in units.items()}


@pytest.fixture(scope="module")
def small_sets(quick_base):
    model, tok, world, _ = quick_base
    watch = world.facts(world.split("statement_only"))[:5]
    train = world.facts(world.split("unseen"))[:7]
    return model.eval(), tok, watch, train


def test_factorised_alignment_equals_autograd(small_sets, one_thread):
    from interference.forecast.gradients import alignment
    model, tok, watch, train = small_sets
    al = alignment(model, tok, watch, train)
    G = None
    for f in train:
        g = _unit_grads(model, f, tok)
        G = g if G is None else {u: G[u] + g[u] for u in G}
    for i, f in enumerate(watch):
        g = _unit_grads(model, f, tok)
        for j, u in enumerate(al.units):
            want, got = float(g[u] @ G[u]), al.ip[i, j]
            assert got == pytest.approx(want, rel=1e-3, abs=1e-4 * (1 + abs(want))), (u, i)
            assert al.sq[i, j] == pytest.approx(float(g[u] @ g[u]), rel=1e-3, abs=1e-6)
    assert set(al.units) == {"embed", "attn.0", "mlp.0", "attn.1", "mlp.1", "unembed"}  # LayerNorms left out


def test_pair_products_exact_where_one_position_carries_the_gradient(small_sets, one_thread):
    """The unembedding's gradient lives only at the answer position of a one-token answer, so
    there the single-position pair product is the full g_i . g_j."""
    from interference.forecast.gradients import alignment
    model, tok, watch, train = small_sets
    al = alignment(model, tok, watch, train, units=["unembed"])  # pair products over the training units only
    gw = [_unit_grads(model, f, tok)["unembed"] for f in watch]
    gt = [_unit_grads(model, f, tok)["unembed"] for f in train]
    want = np.array([[float(a @ b) for b in gt] for a in gw])
    np.testing.assert_allclose(al.pair, want, rtol=1e-3, atol=1e-6)


def test_freeze_restricts_units_and_self_distill_adds_the_kl_gradient(small_sets, one_thread):
    import copy
    from interference.forecast.gradients import alignment
    from interference.forecast.predict import method_alignment_args
    model, tok, watch, train = small_sets
    kw = method_alignment_args(model, "freeze", {"groups": "mlp:0"})
    assert kw == {"units": ["mlp.0"]}
    frozen, plain = alignment(model, tok, watch, train, **kw), alignment(model, tok, watch, train)
    assert frozen.units == plain.units  # one feature set for every method
    j = plain.units.index("mlp.0")
    np.testing.assert_allclose(frozen.ip[:, j], plain.ip[:, j], rtol=1e-5)  # the training unit as under SFT
    assert not np.delete(frozen.ip, j, axis=1).any()  # frozen units do not move
    np.testing.assert_allclose(frozen.sq, plain.sq, rtol=1e-5)  # sensitivity is the fact's, not the method's
    teacher = copy.deepcopy(model)
    same = alignment(model, tok, watch, train, teacher=teacher, kl_weight=1.0)
    np.testing.assert_allclose(same.ip, plain.ip, rtol=1e-4, atol=1e-6)  # KL to itself has zero gradient
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    moved = alignment(model, tok, watch, train, teacher=teacher, kl_weight=1.0)
    assert not np.allclose(moved.ip, plain.ip, rtol=1e-3)


# ---------------------------------------------------------------- pure features
def test_fragility_on_a_constructed_distribution():
    lp = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    out = F.fragility(lp, np.array([0, 2]), [{"p_sample": 0.9}, None])
    np.testing.assert_allclose(out["neg_gold_logprob"], [-math.log(0.7), -math.log(0.8)])
    np.testing.assert_allclose(out["neg_margin"], [math.log(0.2) - math.log(0.7), math.log(0.1) - math.log(0.8)])
    np.testing.assert_allclose(out["slick_miss"], [0.1, 0.0])
    assert out["entropy"][0] > out["entropy"][1] > 0


def test_competition_counts_values_taught_to_the_same_relation():
    lp = np.log(np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1]]))
    rel, gold = np.array([0, 1]), np.array([0, 0])
    train_val, train_rel = np.array([1, 1, 2, 0, 1]), np.array([0, 0, 0, 0, 1])
    train_new = np.array([True, True, True, False, False])
    out = F.competition(lp, gold, rel, train_val, train_rel, train_new)
    np.testing.assert_allclose(out["pull"], [2 * 0.3 + 1 * 0.1, 0.0])
    np.testing.assert_allclose(out["runner_up_taught"], [2, 0])  # runner-up is value 1
    np.testing.assert_allclose(out["neg_gold_taught"], [-1, 0])  # one Known SFT fact teaches value 0
    np.testing.assert_allclose(out["n_new_rel"], [3, 0])


def test_piece_sharing_counts_other_valued_lookalikes_only():
    watch = [[10, 11], [12, 13]]
    new = [[10, 14], [10, 11, 15], [12, 16], [20, 21]]
    out = F.piece_sharing(watch, new, rel=np.array([0, 0]), val=np.array([5, 5]),
                          new_rel=np.array([0, 0, 1, 0]), new_val=np.array([6, 5, 6, 6]), vocab=32)
    np.testing.assert_array_equal(out["pieces_n_diff"], [1, 0])  # new 0 (other value); new 1 has the same value
    np.testing.assert_array_equal(out["pieces_max_diff"], [1, 0])
    np.testing.assert_array_equal(out["pieces_n_same"], [1, 0])
    np.testing.assert_array_equal(out["pieces_n_any"], [2, 1])  # new 2 is another relation but shares piece 12


def test_drivers_are_the_most_conflicting_pairs():
    pair = np.array([[0.5, -2.0, -1.0], [-3.0, 1.0, 0.0]])
    np.testing.assert_array_equal(F.drivers(pair, 2), [[1, 2], [0, 2]])


# ---------------------------------------------------------------- combiner and scores
def _planted(seed, n=300):
    rng = np.random.default_rng(seed)
    signal, noise = rng.normal(size=n), rng.normal(size=n)
    y = signal + 0.3 * rng.normal(size=n) > 1.0
    return {"signal": signal, "noise": noise, "neg_gold_logprob": rng.random(n)}, y


def test_leave_one_seed_out_finds_a_planted_signal_and_not_noise():
    from interference.metrics.stats import auroc
    cols, ys = zip(*[_planted(s) for s in range(3)])
    good = C.leave_one_seed_out(list(cols), list(ys), ["signal", "noise"])
    bad = C.leave_one_seed_out(list(cols), list(ys), ["noise"])
    assert min(auroc(s, y) for s, y in zip(good, ys)) > 0.9
    assert max(abs(auroc(s, y) - 0.5) for s, y in zip(bad, ys)) < 0.15


def test_combiner_json_round_trip_predicts_the_same(tmp_path):
    cols, y = _planted(0)
    comb = C.Combiner(["signal", "noise"], interactions=True).fit(cols, y)
    comb.save(tmp_path / "c.json")
    back = C.Combiner.load(tmp_path / "c.json")
    np.testing.assert_allclose(back.predict(cols), comb.predict(cols))
    with pytest.raises(C.CombinerError, match="lacks fields"):
        C.Combiner.from_dict({"features": ["x"]})
    with pytest.raises(C.CombinerError, match="needs feature"):
        comb.predict({"signal": cols["signal"]})


def test_scores_on_known_cases():
    s, y = np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, False, False, True])
    assert C.precision_at(s, y, 0.25) == 1.0  # top 1 of 4 is forgotten
    assert C.precision_at(s, y, 0.5) == 0.5
    assert C.average_precision(s, y) == pytest.approx((1 + 2 / 3) / 2)  # hits at ranks 1 and 3: (1/1 + 2/3) / 2
    cal = C.calibration(np.array([0.1, 0.1, 0.9, 0.9]), np.array([False, False, True, False]), bins=2)
    assert [c["observed"] for c in cal] == [0.0, 0.5] and [c["n"] for c in cal] == [2, 2]


# ---------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def quick_run(ft_config, tmp_path_factory):
    from interference.train import finetune
    out = tmp_path_factory.mktemp("fc") / "run"
    finetune(ft_config(steps=6, lr=3e-3), out, progress=False)
    return out


def test_cli_writes_ranked_tables_with_drivers(quick_run, ft_base_dir, tmp_path, capsys, one_thread):
    from interference.forecast.cli import main
    out = tmp_path / "fc"
    assert main(["--sft-data", str(quick_run / "sft_data.json"), "--out", str(out), "--method", "sft",
                 "--method", "freeze"]) == 0
    for m in ("sft", "freeze"):
        rows = json.loads((out / f"at_risk_{m}.json").read_text())["rows"]
        stab = json.loads((quick_run / "sft_data.json").read_text())["eval_sets"]["stability"]
        assert sorted(r["fact_id"] for r in rows) == sorted(stab)
        risks = [r["risk"] for r in rows]
        assert risks == sorted(risks, reverse=True) and all(0 <= r <= 1 for r in risks)
        new = set(json.loads((quick_run / "sft_data.json").read_text())["unknown_ids"])
        assert all(d["fact_id"] in new and d["value"] for r in rows for d in r["drivers"])
        header = (out / f"at_risk_{m}.csv").read_text().splitlines()[0]
        assert header.startswith("rank,fact_id,subject,relation,answer,risk")
    from interference.forecast import forecast_for_fact
    row = forecast_for_fact(out, rows[0]["fact_id"], "freeze")
    assert row["rank"] == 1


@pytest.mark.parametrize("content,msg", [("not json", "is not JSON"), ('{"train": []}', "lacks a non-empty"),
                                         ('{"train": ["999999:born_in"], "unknown_ids": []}', "not a fact of the base")])
def test_cli_bad_sft_file_is_one_sentence(content, msg, ft_base_dir, tmp_path, capsys):
    from interference.forecast.cli import main
    bad = tmp_path / "sft_data.json"
    bad.write_text(content)
    out = tmp_path / "out"
    assert main(["--sft-data", str(bad), "--base", ft_base_dir, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and msg in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_evaluate_writes_forecast_json_with_every_predictor(quick_run, tmp_path, one_thread):
    from interference.forecast.cli import main
    out = tmp_path / "ev"
    assert main(["--sft-data", str(quick_run), "--evaluate", "--seeds", "2", "--out", str(out)]) == 0
    res = json.loads((out / "forecast.json").read_text())
    assert set(res["auroc"]) == {"forecast", "fragility", "overlap", "gradient_alignment", "random"}
    for v in res["auroc"].values():
        assert set(v) == {"mean", "lo", "hi", "n"}
    assert (out / "calibration.png").stat().st_size > 0
    assert len(res["methods"]["sft"]["n_facts"]) == 2
    rows = [json.loads(x) for x in (out / "per_fact.jsonl").read_text().splitlines()]
    assert len(rows) == sum(res["methods"]["sft"]["n_facts"])  # one row per held-out seed and fact
    assert {r["seed"] for r in rows} == {0, 1} and all(set(res["auroc"]) <= set(r) for r in rows)
    assert sum(r["forgotten"] for r in rows) == sum(res["methods"]["sft"]["n_forgotten"])


def test_per_method_forecast_uses_the_self_distillation_runs_own_teacher(ft_config, tmp_path):
    # teacher_for must ask the teacher cache with the run's key: it finds the teacher the run
    # trained and builds nothing new (it once imported a builder that no longer existed)
    from pathlib import Path
    from interference.forecast.evaluate import teacher_for
    from interference.models import load_model
    from interference.teacher import TEACHER_DIR
    from interference.train import base_dir_of, finetune
    cfg = ft_config("self_distill")
    rec = finetune(cfg, tmp_path / "sd", progress=False)
    bd = Path(base_dir_of(rec.config))
    before = sorted(p.name for p in (bd / TEACHER_DIR).iterdir())
    world, data = rec.world_and_data()
    model, _, tok = load_model(bd)
    teacher = teacher_for(cfg, model, tok, world, data, bd)
    assert sorted(p.name for p in (bd / TEACHER_DIR).iterdir()) == before
    assert not any(p.requires_grad for p in teacher.parameters())


def test_a_quick_run_read_back_from_json_is_recognised_as_quick():
    """The evaluation picks the quick world from the SFT run's saved base spec; read back from
    JSON it holds lists where the dataclass holds tuples, which a dict comparison called a
    default-world run (so --quick --produce pre-trained the default base)."""
    import json

    from interference.forecast.cli import is_quick_base
    from interference.bases import BaseSpec
    from interference.train import FinetuneConfig

    for quick in (True, False):
        cfg = FinetuneConfig(**{**(FinetuneConfig.quick().to_dict() if quick else {}),
                                "base": BaseSpec.default(quick=quick).to_dict()})
        saved = FinetuneConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert is_quick_base(saved.base) is quick
