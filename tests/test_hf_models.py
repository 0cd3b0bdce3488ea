"""Real architectures through the same code: tiny random GPT-2 / Llama / Qwen2 saved to disk."""
import collections

import pytest
import torch

from interference.evaluate import score_facts
from interference.models import GROUPS, load_hf_model, param_group, parameter_groups
from interference.tokenizer import world_tokenizer
from interference.world import World, WorldConfig

transformers = pytest.importorskip("transformers")


def _tiny(arch: str, vocab: int):
    t = transformers
    if arch == "gpt2":
        return t.GPT2LMHeadModel(t.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=64))
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    if arch == "llama":
        return t.LlamaForCausalLM(t.LlamaConfig(**common))
    return t.Qwen2ForCausalLM(t.Qwen2Config(**common))


@pytest.fixture(scope="module")
def world_and_tok():
    w = World(WorldConfig.quick())
    return w, world_tokenizer(w)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2"])
def test_local_hf_model_loads_scores_and_hooks(arch, tmp_path, world_and_tok):
    world, tok = world_and_tok
    torch.manual_seed(0)
    hf = _tiny(arch, len(tok))
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, tok2 = load_hf_model(tmp_path, device="cpu")
    assert len(tok2) == len(tok)

    # the parameter-group table covers every parameter exactly once, with layers where they exist
    groups = parameter_groups(model)
    assert set(groups) == {n for n, _ in model.named_parameters()}
    counts = collections.Counter(g for g, _ in groups.values())
    assert set(counts) <= set(GROUPS) and {"attn", "mlp", "embed", "norm"} <= set(counts)
    assert {layer for g, layer in groups.values() if g in ("attn", "mlp")} == {0, 1}
    # the bridge may keep unused duplicates (GPT-2's fused c_attn beside its q/k/v split); the
    # parameters a forward pass actually uses must be exactly the HF model's
    model.zero_grad(set_to_none=True)
    model(torch.tensor([[5, 6, 7]])).sum().backward()
    used = sum(p.numel() for p in model.parameters() if p.grad is not None)
    assert used == sum(p.numel() for p in hf.parameters())
    model.zero_grad(set_to_none=True)
    hf.eval()  # a freshly constructed HF model is in training mode, with dropout on

    facts = world.facts()[:12]
    res = score_facts(model, tok2, facts)
    assert len(res) == 12 and all(r.gold_logprob < 0 for r in res)
    # same numbers as the raw HF model, so the bridge adds nothing to what we measure
    from interference.tokenizer import encode_qa
    p, a = encode_qa(tok2, facts[0].prompt, facts[0].answer)
    with torch.no_grad():
        ref = hf(torch.tensor([p])).logits[0, -1].log_softmax(-1)[a[0]]
    # two float32 code paths (bridge vs raw HF) may reduce in another order: relative tolerance
    assert res[0].gold_logprob == pytest.approx(float(ref), rel=1e-4, abs=1e-4)

    _, cache = model.run_with_cache(torch.tensor([p]), names_filter=lambda n: n == "blocks.1.hook_resid_post")
    assert cache["blocks.1.hook_resid_post"].shape[-1] == 32


def test_group_table_rejects_unknown_names():
    from interference.models import ModelError
    with pytest.raises(ModelError, match="matches no group"):
        param_group("mystery.weight")
    assert param_group("model.layers.3.post_attention_layernorm.weight") == ("norm", 3)
    assert param_group("transformer.h.0.attn.c_attn.weight") == ("attn", 0)
