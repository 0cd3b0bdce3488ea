"""forecast.lookahead: a virtual step along the SFT gradient lowers the loss of the SFT fact itself,
raises the loss of a fact asking the same question with another answer, and leaves the weights as
they were."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch


def test_virtual_step_helps_the_taught_fact_hurts_its_contradiction_and_restores_weights(quick_base, one_thread):
    from interference.forecast.lookahead import MULTS, virtual_step
    from interference.tokenizer import encode_qa
    model, tok, world, _ = quick_base
    model.eval()
    new = world.facts(world.split("unseen"))[:4]
    taught = {f.answer for f in new}
    same_rel = sorted({f.answer for f in world.facts(world.split("unseen")) if f.relation == new[0].relation} - taught)
    # watched: the first new fact itself, and the same question answered with a value of the same
    # relation that no SFT fact teaches (a value the step teaches elsewhere would gain too)
    contra = dataclasses.replace(new[0], fact_id=new[0].fact_id + "-contra", answer=same_rel[0])
    watch = [new[0], contra]
    gold = np.array([encode_qa(tok, f.prompt, f.answer)[1][0] for f in watch])
    before = [p.detach().clone() for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    cols = virtual_step(model, tok, watch, new, {f.fact_id for f in new}, gold)
    assert set(cols) == {f"la_{d}_{m:g}_{k}" for d in ("grad", "sign") for m in MULTS for k in ("dloss", "margin")}
    for d in ("grad", "sign"):
        dl = cols[f"la_{d}_1_dloss"]
        assert dl[0] < 0 < dl[1], (d, dl)  # taught fact's loss falls, its contradiction's rises
        assert cols[f"la_{d}_1_margin"][1] > cols[f"la_{d}_1_margin"][0]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert [p.requires_grad for p in model.parameters()] == flags
