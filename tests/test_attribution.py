"""Revert attribution and gradient alignment on a base whose changes we control."""
import copy

import pytest
import torch

from interference.evaluate import score_facts
from interference.metrics.attribution import (gradient_alignment, parameter_units, revert_attribution, reverted)
from interference.batching import answer_loss, pack
from interference.models import ModelConfig, build_model, model_logits
from interference.tokenizer import world_tokenizer
from interference.world import World, WorldConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair(one_thread):
    """(base, 'fine-tuned' copy with only mlp.1 changed, tokenizer, known facts). The base
    memorises 120 QA facts in a few seconds: attribution needs facts to lose, not a real base."""
    world = World(WorldConfig.quick())
    tok = world_tokenizer(world)
    facts = world.facts(world.split("pretrain_qa")[:40])
    torch.manual_seed(0)
    base = build_model(ModelConfig.quick(), len(tok), tok, device="cpu")
    data = pack(tok, [(f.prompt, f.answer) for f in facts], 32)
    opt = torch.optim.AdamW(base.parameters(), lr=1e-2)
    for _ in range(30):
        loss = answer_loss(model_logits(base, data.ids), data)
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    base.eval()
    tuned = copy.deepcopy(base)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in parameter_units(tuned)["mlp.1"]:
            p = dict(tuned.named_parameters())[name]
            p.add_(torch.randn(p.shape, generator=g) * p.std() * 5)
    return base, tuned, tok, facts


def test_units_cover_every_parameter_once(pair):
    base = pair[0]
    units = parameter_units(base)
    names = [n for ns in units.values() for n in ns]
    assert sorted(names) == sorted(n for n, _ in base.named_parameters())
    assert {"embed", "unembed", "attn.0", "mlp.1"} <= set(units)
    assert set(parameter_units(base, by_layer=False)) == {"embed", "attn", "mlp", "norm", "unembed"}


def test_revert_all_gives_base_and_revert_none_gives_tuned(pair):
    base, tuned, tok, facts = pair
    every = [n for n, _ in tuned.named_parameters()]
    tuned_scores = score_facts(tuned, tok, facts)
    with reverted(tuned, base, every):
        assert score_facts(tuned, tok, facts) == score_facts(base, tok, facts)
    with reverted(tuned, base, []):
        assert score_facts(tuned, tok, facts) == tuned_scores
    assert score_facts(tuned, tok, facts) == tuned_scores  # restored on exit


def test_revert_restores_even_on_exception(pair):
    base, tuned, _, _ = pair
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    with pytest.raises(RuntimeError):
        with reverted(tuned, base, parameter_units(tuned)["mlp.1"]):
            raise RuntimeError("interrupted")
    assert all(torch.equal(before[n], p) for n, p in tuned.named_parameters())


def test_single_changed_group_gets_all_the_forgetting(pair):
    base, tuned, tok, facts = pair
    res = revert_attribution(tuned, base, tok, facts)
    assert res.forgetting > 0.2, "the perturbation should make the model forget"
    assert res.share["mlp.1"] == pytest.approx(1.0)
    assert all(v == 0.0 for u, v in res.share.items() if u != "mlp.1")
    grouped = revert_attribution(tuned, base, tok, facts, by_layer=False, units=["mlp", "attn"])
    assert grouped.share == {"mlp": pytest.approx(1.0), "attn": 0.0}
    with pytest.raises(ValueError, match="unknown parameter unit"):
        revert_attribution(tuned, base, tok, facts, units=["mlp.9"])


def test_gradient_alignment_self_is_one_and_leaves_model_untouched(pair):
    base, _, tok, facts = pair
    params = list(base.parameters())
    params[0].requires_grad_(False)
    flags = [p.requires_grad for p in params]
    params[1].grad = torch.ones_like(params[1])  # a trainer's pending gradient must survive
    ga = gradient_alignment(base, tok, facts[:1], facts[:3])
    no_norm = [u for u in parameter_units(base) if not u.startswith("norm")]  # LayerNorm gains have no column
    assert ga.units[-1] == "all" and sorted(ga.units[:-1]) == sorted(no_norm) and ga.cos.shape == (3, len(no_norm) + 1)
    # known fact 0 is the new fact itself: its cosine is 1 up to the float32 rounding of the
    # factorised products (~1e-6 relative), and never past 1 (float64, clamped)
    assert ga.cos.dtype == torch.float64
    assert float(ga.cos[0, -1]) == pytest.approx(1.0, abs=1e-4)
    assert float(ga.cos[0, ga.units.index("mlp.1")]) == pytest.approx(1.0, abs=1e-4)
    grouped = gradient_alignment(base, tok, facts[:1], facts[:3], by_layer=False)
    assert grouped.units == ["embed", "attn", "mlp", "unembed", "all"]
    assert torch.allclose(grouped.cos[:, -1], ga.cos[:, -1], atol=1e-12)  # "all" is the same cosine either way
    assert (ga.cos.abs() <= 1).all()  # clamped: no cosine past 1
    assert [p.requires_grad for p in params] == flags and all(p.grad is None for p in params[2:])
    assert torch.equal(params[1].grad, torch.ones_like(params[1]))
    params[1].grad = None
    params[0].requires_grad_(True)
    assert set(ga.conflict_by_unit()) == set(ga.units)


def test_gradient_alignment_callback_tracks_training(ft_config, tmp_path):
    import json
    from interference.callbacks import GradientAlignmentCallback
    from interference.train import finetune

    cb = GradientAlignmentCallback(every=2, n_known=4)
    rec = finetune(ft_config("sft"), tmp_path / "run", callbacks=[cb], progress=False)
    rows = [json.loads(l) for l in (rec.out / "gradient_alignment.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 2, 4]
    for r in rows:
        assert "all" in r["mean"] and all(-1.0 <= v <= 1.0 for v in r["mean"].values())
        assert all(0.0 <= v <= 1.0 for v in r["conflict"].values())


def test_update_norms_put_a_planted_change_in_its_unit():
    from interference.metrics.attribution import update_norms
    base = build_model(ModelConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=8), 20, device="cpu")
    model = copy.deepcopy(base)
    name = parameter_units(model, by_layer=True)["mlp.1"][0]
    with torch.no_grad():
        dict(model.named_parameters())[name].add_(torch.full_like(dict(model.named_parameters())[name], 0.5))
        n = dict(model.named_parameters())[name].numel()
    norms = update_norms(model, base)
    assert norms["mlp"] == pytest.approx(0.5 * n ** 0.5, rel=1e-9) and norms["total"] == pytest.approx(norms["mlp"])
    assert all(v == 0 for k, v in norms.items() if k not in ("mlp", "total"))
    assert update_norms(model, base, by_layer=True)["mlp.1"] == pytest.approx(norms["mlp"])
