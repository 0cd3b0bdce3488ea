"""Probes: positions, hook names, capture exactness, hook cleanup, snapshots and fingerprints."""
from types import SimpleNamespace

import pytest
import torch

from interference.data import Fact
from interference.models import ModelConfig, build_model
from interference.probes import (ProbeCallback, ProbeError, capture, load_probes, state_fingerprint, resid_hooks,
                                 token_positions)
from interference.tokenizer import world_tokenizer
from interference.world import World, WorldConfig


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(one_thread):
    world = World(WorldConfig.quick())
    tok = world_tokenizer(world)
    model = build_model(ModelConfig.quick(), len(tok), tok, device="cpu")
    facts = world.facts(world.split("pretrain_qa")[:20]) + world.facts(world.split("unseen")[:10], template=1)
    return world, tok, model, facts


def test_positions_by_hand(tiny):
    world, tok, _, _ = tiny
    f = world.facts(world.split("pretrain_qa")[:1])[0]
    ids, (subj, rel, last) = token_positions(tok, f, ["subject_last", "relation", "last"])
    words = f.prompt.split()
    assert len(ids) == len(words)
    assert words[subj] == f.subject.split()[-1] and words[rel] == words[subj + 1] and last == len(words) - 1


def test_position_errors(tiny):
    _, tok, model, facts = tiny
    no_subject = Fact("x", "zz qq", "born_in", "city_1", "Q: where was va born ? A:")
    with pytest.raises(ProbeError, match="does not occur in its prompt"):
        capture(model, tok, [no_subject], ["blocks.0.hook_resid_post"], "subject_last")
    subject_at_end = Fact("y", facts[0].subject, "born_in", "city_1", f"Q: {facts[0].subject}")
    with pytest.raises(ProbeError, match="does not exist in prompt"):
        capture(model, tok, [subject_at_end], ["blocks.0.hook_resid_post"], "relation")
    with pytest.raises(ProbeError, match="unknown token position"):
        capture(model, tok, facts, ["blocks.0.hook_resid_post"], "answer")


def test_unknown_hook_lists_close_matches(tiny):
    _, tok, model, facts = tiny
    with pytest.raises(ProbeError, match=r"no hook point 'blocks.0.hook_resid_pst'; close matches: \['blocks.0.hook_resid_post'"):
        capture(model, tok, facts, ["blocks.0.hook_resid_pst"], "last")


def test_capture_matches_single_prompt_forward(tiny):
    _, tok, model, facts = tiny
    hooks = ["hook_embed", "blocks.0.hook_out", "blocks.1.hook_resid_post", "blocks.1.mlp.hook_out",
             "blocks.0.attn.hook_out", "blocks.1.attn.hook_z"]
    acts = capture(model, tok, facts, hooks, ["subject_last", "relation", "last"], batch_size=7)
    assert set(acts) == set(hooks)
    assert acts["blocks.1.hook_resid_post"].shape == (len(facts), 3, 64)
    assert acts["blocks.1.attn.hook_z"].shape == (len(facts), 3, 64)  # heads x d_head flattened
    assert torch.equal(acts["blocks.0.hook_out"], capture(model, tok, facts, ["blocks.0.hook_resid_post"],
                                                          ["subject_last", "relation", "last"])["blocks.0.hook_resid_post"])
    for i in (0, 13, len(facts) - 1):
        ids, pos = token_positions(tok, facts[i], ["subject_last", "relation", "last"])
        with torch.no_grad():
            _, cache = model.run_with_cache(torch.tensor([ids]), names_filter=["blocks.1.hook_resid_post"])
        # float32 forward passes of a batch of 7 vs a single sequence sum in another order
        # (BLAS blocking, thread count): compare relative to the states' scale, not at a fixed 1e-5
        ref = cache["blocks.1.hook_resid_post"][0, pos]
        torch.testing.assert_close(acts["blocks.1.hook_resid_post"][i], ref, rtol=1e-4,
                                   atol=1e-4 * float(ref.abs().max()))
    single = capture(model, tok, facts, ["blocks.1.hook_resid_post"], "last")
    assert torch.allclose(single["blocks.1.hook_resid_post"], acts["blocks.1.hook_resid_post"][:, 2])


def test_hooks_removed_and_mode_restored_on_exception(tiny):
    _, tok, model, facts = tiny
    hp = model.hook_dict["blocks.1.hook_out"]

    def boom(x, hook):
        raise RuntimeError("boom")

    model.train()
    handle = hp.add_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            capture(model, tok, facts, ["blocks.0.hook_resid_post"], "last")
    finally:
        hp.remove_hooks(including_permanent=True)
    assert not model.hook_dict["blocks.0.hook_resid_post"].has_hooks()
    assert model.training
    del handle


def _ctx(model, base, tok, world, out, step=0):
    data = SimpleNamespace(train=world.facts(world.split("unseen")[:5]),
                           eval_sets={"stability": world.facts(world.split("statement_only")[:5])})
    return SimpleNamespace(model=model, base_model=base, tokenizer=tok, world=world, data=data, out=out, step=step)


def test_callback_snapshots_and_refuses_other_models(tiny, tmp_path):
    world, tok, model, _ = tiny
    cb = ProbeCallback(("stability", "train"), positions=("subject_last", "last"), every=10)
    ctx = _ctx(model, model, tok, world, tmp_path)
    cb.on_start(ctx)
    for step in (5, 10, 15, 20):
        ctx.step = step
        cb.on_eval(ctx, step)
    ctx.step = 23
    cb.on_end(ctx)
    store = load_probes(tmp_path, base_model=model)
    assert store.steps == [0, 10, 20, 23]
    assert store.hooks == resid_hooks(model) and len(store.fact_ids) == 30
    s = store.series("blocks.1.hook_resid_post", "last")
    assert s.shape == (4, 30, 64)
    assert torch.allclose(s[0], capture(model, tok, cb.facts, ["blocks.1.hook_resid_post"], "last")
                          ["blocks.1.hook_resid_post"], atol=1e-2)  # float16 storage
    assert store.rows([cb.facts[3].fact_id]).tolist() == [3]

    other = build_model(ModelConfig.quick(seed=1), len(tok), tok, device="cpu")
    assert state_fingerprint(other)["arch"] == state_fingerprint(model)["arch"]
    with pytest.raises(ProbeError, match="different base model"):
        load_probes(tmp_path, base_model=other)
    with pytest.raises(ProbeError, match="different base model"):
        ProbeCallback(("stability",)).on_start(_ctx(other, other, tok, world, tmp_path))
    # a single step file copied in from another model's run is refused on read
    other_dir = tmp_path / "other"
    ProbeCallback(("stability", "train"), positions=("subject_last", "last")).on_start(
        _ctx(other, other, tok, world, other_dir))
    (other_dir / "probes" / "step_0000000.safetensors").replace(tmp_path / "probes" / "step_0000010.safetensors")
    with pytest.raises(ProbeError, match="probe file .* different base model"):
        store.get(10, "blocks.1.hook_resid_post", "last")


def test_probe_callback_inside_finetune(ft_config, ft_base_dir, tmp_path):
    """The callback against the real loop: snapshots at the step-0 evaluation and every 2 steps
    after, stamped with the base model, and zero drift at step 0 by construction."""
    from interference.metrics.overlap import drift
    from interference.models import load_model
    from interference.train import finetune

    cb = ProbeCallback(("stability", "plasticity"), positions=("subject_last", "last"), every=2)
    finetune(ft_config(), tmp_path / "run", callbacks=[cb], progress=False)
    base, _, _ = load_model(ft_base_dir, device="cpu")
    store = load_probes(tmp_path / "run", base_model=base)
    assert store.steps == [0, 2, 4]
    assert set(store.index["fact_sets"].values()) == {"stability", "plasticity"}
    hook = store.hooks[-1]
    s = store.series(hook, "subject_last")
    assert float(drift(s[0], s[0]).abs().max()) < 1e-6
    assert float(drift(s[-1], s[0]).mean()) > 0.0  # training moved the representations


def test_drift_zero_for_unchanged_model(tiny):
    from interference.metrics.overlap import drift
    _, tok, model, facts = tiny
    a = capture(model, tok, facts, ["blocks.1.hook_resid_post"], "subject_last")["blocks.1.hook_resid_post"]
    b = capture(model, tok, facts, ["blocks.1.hook_resid_post"], "subject_last")["blocks.1.hook_resid_post"]
    assert float(drift(b, a).abs().max()) < 1e-6


def test_probe_analysis_end_to_end(ft_base_dir, tmp_path):
    """analyses/probe_analysis.py as a function on a tiny run: JSON with every section + 3 PNGs."""
    import importlib.util
    import json
    from pathlib import Path

    from interference.sft_data import SFTDataConfig

    path = Path(__file__).resolve().parents[1] / "analyses" / "probe_analysis.py"
    spec = importlib.util.spec_from_file_location("probe_analysis", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s = mod.probe_analysis(tmp_path, methods=("sft",), quick=True, base_dir=ft_base_dir, steps=4, eval_every=2,
                           lr=1e-2, data=SFTDataConfig(n_facts=16, n_task=4, n_stability=16))
    saved = json.loads((tmp_path / "probe_analysis.json").read_text())
    assert {"methods", "overlap", "attribution", "gradient_alignment_base", "readout"} <= set(saved)
    assert [p["step"] for p in saved["methods"]["sft"]["drift"]] == [0, 2, 4]
    assert all(Path(f).stat().st_size > 0 for f in s["figures"]) and len(s["figures"]) == 3


def test_every_hook_name_of_the_table_fires(tiny):
    from interference import hooks
    _, tok, model, facts = tiny
    facts = facts[:3]
    names = [hooks.EMBED_OUT, *hooks.resid_posts(model.cfg.n_layers), hooks.mlp_out(0), hooks.attn_out(0)]
    acts = capture(model, tok, facts, names, "subject_last")
    assert set(acts) == set(names) and all(v.shape == (3, model.cfg.d_model) for v in acts.values())
