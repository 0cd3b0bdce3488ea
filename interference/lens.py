"""Logit lens: what the answer position "would say" after each layer.

Each layer's residual stream (``blocks.{i}.hook_resid_post``, at the last prompt token) is passed
through the model's own final norm and unembedding (``model.ln_final``, ``model.unembed``, the
names TransformerBridge gives every architecture), as nostalgebraist's logit lens does. Why it
helps here: a forgotten fact whose gold answer is still on top in a middle layer and lost only at
the end was overwritten late (a readout problem); one that never rises was lost early.

After the last layer the lens *is* the model's output (tested to float tolerance).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from interference.hooks import resid_post
from interference.data import Fact
from interference.models import model_device
from interference.tokenizer import encode_qa


@dataclass
class LensResult:
    """Per fact and layer: log-prob of the gold answer's first token, and the top token."""
    fact_ids: list[str]
    layers: list[int]
    gold_logprob: torch.Tensor  # [n_facts, n_layers]
    top_token: list[list[str]]  # [n_facts][n_layers]
    top_logprob: torch.Tensor  # [n_facts, n_layers]
    gold_rank: torch.Tensor  # [n_facts, n_layers]; 0 = the gold token is on top

    def row(self, i: int = 0) -> list[dict]:
        return [{"layer": l, "gold_logprob": float(self.gold_logprob[i, k]), "gold_rank": int(self.gold_rank[i, k]),
                 "top": self.top_token[i][k], "top_logprob": float(self.top_logprob[i, k])}
                for k, l in enumerate(self.layers)]


def lens_logits(model, ids: torch.Tensor, layers: Sequence[int] | None = None) -> torch.Tensor:
    """[n_layers, batch, pos, vocab] logits read off each layer's residual stream."""
    n = int(model.cfg.n_layers)
    layers = list(range(n)) if layers is None else list(layers)
    hooks = [resid_post(i) for i in layers]
    _, cache = model.run_with_cache(ids, names_filter=hooks, return_cache_object=False)
    missing = [h for h in hooks if h not in cache]
    if missing:
        raise ValueError(f"hook {missing[0]!r} did not fire; the logit lens needs the residual stream after each block.")
    return torch.stack([model.unembed(model.ln_final(cache[h])) for h in hooks])


@torch.no_grad()
def logit_lens(model, tokenizer, facts: Sequence[Fact], layers: Sequence[int] | None = None) -> LensResult:
    """The logit lens at the answer position of each fact (one forward pass per fact: prompts of
    different lengths need no padding then, and a report asks about a handful of facts)."""
    was = model.training
    model.eval()
    dev = model_device(model)
    layers = list(range(int(model.cfg.n_layers))) if layers is None else list(layers)
    gold, top_lp, rank, top = [], [], [], []
    try:
        for f in facts:
            p, a = encode_qa(tokenizer, f.prompt, f.answer)
            lp = lens_logits(model, torch.tensor([p], device=dev), layers)[:, 0, -1].float().log_softmax(-1)
            g = lp[:, a[0]]
            gold.append(g.cpu())
            best = lp.max(-1)
            top_lp.append(best.values.cpu())
            rank.append((lp > g[:, None]).sum(-1).cpu())
            top.append([tokenizer.decode([int(t)]).strip() for t in best.indices])
    finally:
        model.train(was)
    return LensResult([f.fact_id for f in facts], layers, torch.stack(gold), top, torch.stack(top_lp),
                      torch.stack(rank))
