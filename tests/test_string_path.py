"""The TransformerLens habit: ``model("Q: ... A:")`` must see the token path's tokens and logits.

The token path is ``tokenizer(prompt)`` (``encode_qa``), which every evaluation uses; a bridge
that strips or adds a BOS on strings would answer a different question silently.
"""
from __future__ import annotations

import pytest
import torch

import real_fixtures as rf

# ------------------------------------------------------------------ the string path of the bridge
def _bos_tokenizer(path):
    """The fixture model's word-level tokenizer, made to prepend <bos> itself (as Llama's does)."""
    from tokenizers.processors import TemplateProcessing
    from interference.models import load_hf_tokenizer
    tok = load_hf_tokenizer(path)
    tok._tokenizer.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", tok.bos_token_id)])
    assert tok("Q:")["input_ids"][0] == tok.bos_token_id
    return tok


PROMPT = "Q: Where was Anna Lee born? A:"


def _same_as_token_path(model, tok, prompt: str) -> None:
    ids = torch.tensor([tok(prompt)["input_ids"]])
    assert model.to_tokens(prompt).tolist() == ids.tolist()
    with torch.no_grad():
        a, b = model(ids), model(prompt)
    assert a.shape == b.shape
    torch.testing.assert_close(a, b)


def test_native_model_called_with_a_string_sees_every_token():
    from interference.models import ModelConfig, build_model
    tok = rf.tokenizer()
    model = build_model(ModelConfig.quick(), len(tok), tokenizer=tok, device="cpu").eval()
    assert tok(PROMPT)["input_ids"][0] != tok.bos_token_id  # our tokenizer adds no BOS ...
    assert model.to_str_tokens(PROMPT)[0] == "Q:"  # ... and the bridge no longer drops the first token
    _same_as_token_path(model, tok, PROMPT)


@pytest.mark.parametrize("arch,bos", [("llama", True), ("gpt2", False)])
def test_hf_model_string_path_matches_the_token_path(arch, bos):
    from interference.models import load_hf_model
    tok = _bos_tokenizer(rf.model_dir(arch)) if bos else None
    model, tok = load_hf_model(rf.model_dir(arch), device="cpu", tokenizer=tok)
    model.eval()
    assert (tok(PROMPT)["input_ids"][0] == tok.bos_token_id) == bos
    _same_as_token_path(model, tok, PROMPT)


