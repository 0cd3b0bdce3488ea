"""Methods: pure loss pieces on constructed cases, then each method trained for a few steps."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from interference.methods import METHODS, MethodError, get_method
from interference.methods.freeze import parse_spec, select_parameters
from interference.methods.self_distill import token_kl, validate_teacher
from interference.models import load_model, model_logits, param_group


# ---------------------------------------------------------------- token_kl (pure)
def test_token_kl_zero_for_identical_inputs():
    x = torch.randn(2, 5, 7)
    assert float(token_kl(x, x.clone(), torch.ones(2, 5, dtype=torch.bool))) == pytest.approx(0.0, abs=1e-6)


def test_token_kl_hand_computed_and_direction():
    # One position, two tokens, temperature 1: teacher p = (0.8, 0.2), student q = (0.5, 0.5).
    t = torch.log(torch.tensor([[[0.8, 0.2]]]))
    s = torch.log(torch.tensor([[[0.5, 0.5]]]))
    m = torch.ones(1, 1, dtype=torch.bool)
    fwd = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)  # KL(teacher || student)
    rev = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)  # KL(student || teacher)
    assert float(token_kl(s, t, m, temperature=1.0, direction="forward")) == pytest.approx(fwd, rel=1e-5)
    assert float(token_kl(s, t, m, temperature=1.0, direction="reverse")) == pytest.approx(rev, rel=1e-5)
    assert fwd != pytest.approx(rev)


def test_token_kl_temperature_sharpens():
    # T = 0.5 squares-and-renormalises the probabilities: p ~ (0.64, 0.04) -> (16/17, 1/17).
    t = torch.log(torch.tensor([[[0.8, 0.2]]]))
    s = torch.log(torch.tensor([[[0.5, 0.5]]]))
    p = torch.tensor([16 / 17, 1 / 17])
    expected = float((p * (p.log() - math.log(0.5))).sum())
    assert float(token_kl(s, t, torch.ones(1, 1, dtype=torch.bool), temperature=0.5)) == pytest.approx(expected, rel=1e-5)


def test_token_kl_ignores_masked_positions():
    s, t = torch.randn(1, 3, 6), torch.randn(1, 3, 6)
    mask = torch.tensor([[True, False, False]])
    t2 = t.clone()
    t2[0, 1:] = torch.randn(2, 6) * 10  # change only masked-out positions
    assert float(token_kl(s, t, mask)) == pytest.approx(float(token_kl(s, t2, mask)))
    assert float(token_kl(s, t, torch.zeros(1, 3, dtype=torch.bool))) == 0.0


def test_token_kl_refuses_vocab_mismatch():
    with pytest.raises(MethodError, match="vocabular"):
        token_kl(torch.randn(1, 2, 5), torch.randn(1, 2, 6), torch.ones(1, 2, dtype=torch.bool))


def test_teacher_checks():
    student = SimpleNamespace(cfg=SimpleNamespace(d_vocab=10))
    with pytest.raises(MethodError, match="student object itself"):
        validate_teacher(student, student)
    with pytest.raises(MethodError, match="vocabulary"):
        validate_teacher(SimpleNamespace(cfg=SimpleNamespace(d_vocab=12)), student)


# ---------------------------------------------------------------- registry and configs
def test_registry_lists_valid_names():
    assert {"sft", "self_distill", "freeze", "l2_init", "ewc", "replay", "lora"} <= set(METHODS)
    with pytest.raises(MethodError, match="valid methods are"):
        get_method("magic")
    with pytest.raises(MethodError, match="valid options"):
        get_method("sft", kl_weight=1.0)


@pytest.mark.parametrize("name, opts, msg", [
    ("self_distill", {"temperature": 0}, "positive"),
    ("self_distill", {"direction": "sideways"}, "direction"),
    ("self_distill", {"teacher": "oracle"}, "teacher"),
    ("freeze", {"groups": "attention"}, "valid groups"),
    ("freeze", {"groups": ""}, "freeze everything"),
    ("freeze", {"groups": "mlp:3-1"}, "empty"),
    ("l2_init", {"match": "fisher"}, "match"),
    ("lora", {"rank": 0}, "rank"),
    ("replay", {"ratio": 0}, "positive"),
])
def test_bad_options(name, opts, msg):
    with pytest.raises(MethodError, match=msg):
        get_method(name, **opts)


def test_parse_spec():
    assert parse_spec("attn:0-1, mlp ,unembed") == [("attn", 0, 1), ("mlp", None, None), ("unembed", None, None)]
    assert parse_spec("mlp:2") == [("mlp", 2, 2)]


def test_freeze_selection_against_model(quick_base):
    model = quick_base[0]
    n = int(model.cfg.n_layers)
    sel = select_parameters(model, "attn:0-0")
    assert sel and all(param_group(k) == ("attn", 0) for k, _ in sel)
    everything = {k for k, _ in model.named_parameters()}
    all_groups = {k for k, _ in select_parameters(model, "embed,attn,mlp,norm,unembed")}
    assert all_groups == everything  # the table leaves no parameter out
    with pytest.raises(MethodError, match=f"layers are 0-{n - 1}"):
        select_parameters(model, f"mlp:0-{n}")
    with pytest.raises(MethodError, match="selects no parameter"):
        select_parameters(model, "embed:0")


# ---------------------------------------------------------------- each method trains what it should
def _changed(run_dir, base_dir) -> set[str]:
    base, _, _ = load_model(base_dir)
    tuned, _, _ = load_model(run_dir)
    b = dict(base.named_parameters())
    return {n for n, p in tuned.named_parameters() if not torch.equal(p, b[n])}


@pytest.mark.parametrize("method, opts, allowed", [
    ("sft", {}, None),
    ("freeze", {"groups": "attn"}, {"attn"}),
    ("freeze", {"groups": "mlp:1"}, {("mlp", 1)}),
    ("self_distill", {"teacher": "format"}, None),
    ("l2_init", {}, None),
    ("ewc", {"n_fisher": 8}, None),
    ("replay", {}, None),
    ("lora", {"targets": "attn"}, {"attn"}),
])
def test_method_changes_exactly_its_parameters(method, opts, allowed, ft_config, ft_base_dir, tmp_path):
    from interference.train import finetune
    rec = finetune(ft_config(method, method_options=opts), tmp_path / "run", progress=False)
    changed = _changed(tmp_path / "run" / "model", ft_base_dir)
    assert changed, f"{method} changed nothing"
    if allowed is not None:
        for n in changed:
            g, layer = param_group(n)
            assert g in allowed or (g, layer) in allowed, f"{method} {opts} changed frozen parameter {n}"
    if method == "lora":  # adapters merge into weight matrices only
        assert all(n.endswith("weight") for n in changed)
    assert rec.metrics["n_trainable"] > 0


def test_large_kl_weight_stays_near_teacher(ft_config, ft_base_dir, tmp_path):
    """With lambda = 100 and the base as teacher, the answer distribution (at the KL temperature) barely moves.

    30 steps, not 5: the KL gradient is zero at the start, so Adam's first steps follow CE alone and
    the KL term needs a few steps to pull the student back."""
    from interference.batching import pack
    from interference.train import finetune

    base, _, _ = load_model(ft_base_dir)
    kls = {}
    for name, method, opts in [("sft", "sft", {}), ("sd", "self_distill", {"teacher": "base", "kl_weight": 100.0})]:
        rec = finetune(ft_config(method, method_options=opts, steps=30, eval_every=30, lr=3e-4), tmp_path / name, progress=False)
        tuned, _, tok = rec.load_model()
        _, data = rec.world_and_data()
        batch = pack(tok, [(f.prompt, f.answer) for f in data.train], 32)
        with torch.no_grad():
            kls[name] = float(token_kl(model_logits(tuned, batch.ids), model_logits(base, batch.ids), batch.loss_mask, 0.5))
    print(kls); assert kls["sd"] < 0.1 * kls["sft"], kls
