"""Self-distillation's stated conventions hold: KL direction, temperature without the T^2 factor,
and the positions the KL covers."""
from __future__ import annotations

import pytest
import torch

from interference.batching import Packed
from interference.methods.self_distill import kl_mask, token_kl


def _manual_forward_kl(s, t, temperature):
    p_t = torch.softmax(t.double() / temperature, -1)
    return (p_t * (torch.log_softmax(t.double() / temperature, -1) - torch.log_softmax(s.double() / temperature, -1))).sum(-1)


def test_token_kl_has_no_t_squared_factor():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    mask = torch.ones(2, 3, dtype=torch.bool)
    for temp in (0.5, 1.0, 2.0):
        want = _manual_forward_kl(s, t, temp).mean()
        got = token_kl(s, t, mask, temperature=temp, direction="forward")
        assert float(got) == pytest.approx(float(want), rel=1e-5)
        # with Hinton's T^2 the value would differ by that factor (except at T = 1)
        if temp != 1.0:
            assert float(got) != pytest.approx(float(want) * temp ** 2, rel=1e-3)


def test_token_kl_direction_and_mask():
    s = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]])
    t = torch.tensor([[[0.0, 1.0, 0.0], [5.0, 0.0, 0.0]]])
    only_first = torch.tensor([[True, False]])
    fwd = token_kl(s, t, only_first, temperature=1.0, direction="forward")
    rev = token_kl(s, t, only_first, temperature=1.0, direction="reverse")
    assert float(fwd) == pytest.approx(float(_manual_forward_kl(s, t, 1.0)[0, 0]), rel=1e-5)
    assert float(rev) == pytest.approx(float(_manual_forward_kl(t, s, 1.0)[0, 0]), rel=1e-5)
    assert float(token_kl(s, t, torch.zeros(1, 2, dtype=torch.bool))) == 0.0


def test_kl_positions_all_cover_every_real_next_token_answer_only_the_answer():
    pad = 0
    ids = torch.tensor([[5, 6, 7, 8, pad, pad]])  # prompt 5 6 7, answer 8
    loss_mask = torch.tensor([[False, False, True, False, False, False]])  # logits[2] predict the answer
    b = Packed(ids, loss_mask)
    assert kl_mask(b, "answer", pad).tolist() == loss_mask.tolist()
    # "all": every position whose next token is real (the prompt and the answer), never padding
    assert kl_mask(b, "all", pad).tolist() == [[True, True, True, False, False, False]]


def test_l2_init_matches_the_gradient_of_the_kl_self_distillation_applies(quick_base):
    """The matched L2 weight = |grad of lambda x the self-distillation KL (same positions, pad id,
    temperature)| / |grad of the L2 term|, both at the SFT probe."""
    from types import SimpleNamespace

    from interference.batching import pack
    from interference.methods import get_method
    from interference.methods.base import weighted_sq_distance
    from interference.methods.l2_init import L2InitConfig, _grad_norm, kl_matched_weight
    from interference.models import clone_model, model_logits
    model, tok, world, _ = quick_base
    torch.manual_seed(0)

    def nudged(scale):
        m = clone_model(model)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(scale * torch.randn_like(p))
        return m.eval()
    teacher, probe = nudged(0.02), nudged(0.01)
    facts = world.facts(world.split("unseen"))[:8]
    ctx = SimpleNamespace(teacher=teacher, probe=probe, base_model=model, tokenizer=tok, data=SimpleNamespace(train=facts),
                          config=SimpleNamespace(batch_size=8), n_ctx=int(model.cfg.n_ctx), device=torch.device("cpu"))
    params_of = lambda m: list(m.named_parameters())  # noqa: E731
    got = kl_matched_weight(ctx, params_of, L2InitConfig(match="kl", kl_weight=1.0, temperature=0.5))
    sd = get_method("self_distill", kl_weight=1.0, temperature=0.5)
    sd.teacher, sd.pad_id = teacher, tok.pad_token_id
    for p in probe.parameters():
        p.requires_grad_(True)
    b = pack(tok, [(f.prompt, f.answer) for f in facts], int(model.cfg.n_ctx))
    g_kl = _grad_norm(sd.kl_term(probe, b, model_logits(probe, b.ids)), params_of(probe))
    anchor = {n: p.detach() for n, p in params_of(model)}
    g_l2 = _grad_norm(weighted_sq_distance(params_of(probe), anchor), params_of(probe))
    assert got == pytest.approx(g_kl / g_l2, rel=1e-4)
    answer_only = kl_matched_weight(ctx, params_of, L2InitConfig(match="kl", positions="answer"))
    assert answer_only != pytest.approx(got, rel=1e-3)  # the positions matter, so matching them matters
