"""The format-teacher stage, weights fingerprints, and every method as an arm of a hypothesis."""
from __future__ import annotations

import json
import random

import pytest
import torch

from interference import teacher as teacher_mod
from interference.hypotheses.grid import Cell, run_grid
from interference.train import SFTSpec, finetune_on
from interference.methods import METHODS, MethodError
from interference.models import param_group, weights_fingerprint
from interference.bases import base_fingerprint, load_slick
from interference.sft_data import known_qa_facts
from interference.teacher import TeacherRecipe, format_teacher


@pytest.fixture(scope="module")
def known(quick_base):
    model, tok, world, run_dir = quick_base
    return known_qa_facts(world, load_slick(run_dir), 24, random.Random(0))


def test_fingerprint_names_the_weights_not_the_config(quick_base, tmp_path):
    model, _, _, run_dir = quick_base
    fp = base_fingerprint(run_dir)
    assert fp == weights_fingerprint(model.state_dict()) and len(fp) == 16
    assert json.loads((run_dir / "fingerprint.json").read_text())["weights"] == fp
    state = {k: v.clone() for k, v in model.state_dict().items()}
    k = sorted(state)[0]
    state[k].view(-1)[0] += 1e-3  # one weight moved: another fingerprint
    assert weights_fingerprint(state) != fp


def test_teacher_is_trained_once_and_cached_by_base_weights(quick_base, known, tmp_path, monkeypatch):
    model, tok, _, _ = quick_base
    recipe = TeacherRecipe(lr=1e-3, batch_size=8)
    calls = []
    real = teacher_mod.train_loop
    monkeypatch.setattr(teacher_mod, "train_loop", lambda *a, **k: calls.append(1) or real(*a, **k))
    t1 = format_teacher(model, tok, known, recipe, base_dir=tmp_path, fingerprint="a" * 16)
    t2 = format_teacher(model, tok, known, recipe, base_dir=tmp_path, fingerprint="a" * 16)
    assert calls == [1]  # the second call loaded the cache
    assert all(torch.equal(p, q) for p, q in zip(t1.parameters(), t2.parameters()))
    assert not any(p.requires_grad for p in t2.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(t1.parameters(), model.parameters()))  # it did train
    format_teacher(model, tok, known, recipe, base_dir=tmp_path, fingerprint="b" * 16)
    assert calls == [1, 1]  # other base weights: another entry, never the first one
    entries = sorted((tmp_path / "teachers").iterdir())
    assert len(entries) == 2
    assert {json.loads((e / "teacher.json").read_text())["base_fingerprint"] for e in entries} == {"a" * 16, "b" * 16}


def test_methods_receive_their_teacher_and_train_nothing(quick_base, known):
    model, tok, world, _ = quick_base
    train = known[:8]
    with pytest.raises(MethodError, match="format teacher"):
        finetune_on(model, tok, train, SFTSpec(max_steps=2, batch_size=4, method="self_distill"))
    # self_distill with the base as teacher needs no stage at all
    res = finetune_on(model, tok, train, SFTSpec(max_steps=2, batch_size=4, eval_every=1, learned_at=2.0,
                                                 method="self_distill", method_options={"teacher": "base"}))
    assert res.steps == 2


@pytest.mark.parametrize("method, opts, allowed", [
    ("sft", {}, None),
    ("self_distill", {}, None),
    ("freeze", {"groups": "mlp"}, {"mlp"}),
    ("l2_init", {"match": "kl", "calib_steps": 2}, None),
    ("ewc", {"n_fisher": 4}, None),
    ("replay", {}, None),
    ("lora", {"targets": "attn", "rank": 2}, {"attn"}),
])
def test_every_method_is_an_arm(method, opts, allowed, quick_base, known):
    """finetune_on runs any registered method through the one loop, training what the method says."""
    model, tok, world, _ = quick_base
    spec = SFTSpec(max_steps=4, batch_size=4, eval_every=2, lr=1e-3, learned_at=2.0, method=method,
                   method_options=opts)
    teacher = format_teacher(model, tok, known, TeacherRecipe(lr=1e-3, batch_size=8))
    res = finetune_on(model, tok, known[:8], spec, teacher=teacher, world=world)
    assert res.steps == 4 and 0.0 <= res.plasticity <= 1.0
    base = dict(model.named_parameters())
    changed = {n for n, p in res.model.named_parameters() if not torch.equal(p, base[n])}
    assert changed, f"{method} changed nothing"
    if allowed is not None:
        assert all(param_group(n)[0] in allowed for n in changed), changed


def test_all_methods_are_covered_above():
    assert set(METHODS) == {"sft", "self_distill", "freeze", "l2_init", "ewc", "replay", "lora"}


def test_sftspec_resolves_method_defaults_into_the_cell_key():
    a = SFTSpec(method="self_distill", method_options={"kl_weight": 1.0})
    assert a.method_options["temperature"] == 0.5 and SFTSpec(method="self_distill").to_dict() == a.to_dict()
    with pytest.raises(MethodError, match="valid options"):
        SFTSpec(method="sft", method_options={"kl_weight": 1.0})


def test_cells_of_other_weights_are_recomputed_not_mixed(tmp_path, capsys):
    calls = []
    cells = [Cell("toy", {"i": i}, (lambda i=i: calls.append(i) or {"x": i}), base="spec") for i in range(2)]
    run_grid(cells, tmp_path, progress=False, fingerprint=lambda spec: "f1")
    assert run_grid(cells, tmp_path, progress=False, fingerprint=lambda spec: "f1").reused == 2
    rep = run_grid(cells, tmp_path, progress=False, fingerprint=lambda spec: "f2")
    assert rep.computed == 2 and rep.stale == 2 and calls == [0, 1, 0, 1]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "f1" in err[0] and "f2" in err[0] and "recomputed" in err[0]
    assert all(json.loads(p.read_text())["fingerprint"] == "f2" for p in tmp_path.glob("toy-*.json"))


def test_clone_model_leaves_the_original_copyable_after_training_the_clone(quick_base):
    """deepcopy of a bridge shares hook closures; a trained copy used to poison the original."""
    import copy
    from interference.batching import answer_loss, pack
    from interference.models import clone_model, model_logits
    model, tok, world, _ = quick_base
    twin = clone_model(model)
    for p in twin.parameters():
        p.requires_grad_(True)
    batch = pack(tok, [world.render_qa(e, r, 0) for e in world.split("pretrain_qa")[:4]
                       for r in world.config.relations[:1]])
    answer_loss(model_logits(twin, batch.ids), batch).backward()
    captured = [m._captured_pre_ln_residual for m in model.modules() if hasattr(m, "_captured_pre_ln_residual")]
    assert all(c is None or c.grad_fn is None for c in captured)
    copy.deepcopy(model)  # raised "Only Tensors created explicitly by the user ..." before clone_model
