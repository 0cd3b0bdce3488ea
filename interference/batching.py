"""Turn (prefix, target) text pairs into padded token tensors with a loss mask.

Why one module: pre-training, every fine-tuning method and the KL term all need "the loss on
the answer tokens only"; building the mask in one place keeps them consistent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from interference.tokenizer import encode_qa


@dataclass
class Packed:
    """Right-padded examples. ``loss_mask[i, t]`` marks positions whose *next* token is a target.

    With causal attention, right padding never changes the logits of real positions, so no
    attention mask is needed.
    """

    ids: torch.Tensor  # [n, seq] long
    loss_mask: torch.Tensor  # [n, seq] bool, True at t where ids[t+1] is an answer token

    def __len__(self) -> int:
        return self.ids.shape[0]

    def subset(self, idx: torch.Tensor | Sequence[int]) -> "Packed":
        return Packed(self.ids[idx], self.loss_mask[idx])

    def to(self, device) -> "Packed":
        return Packed(self.ids.to(device), self.loss_mask.to(device))

    @staticmethod
    def cat(parts: Sequence["Packed"], pad_id: int) -> "Packed":
        width = max(p.ids.shape[1] for p in parts)
        ids = torch.cat([F.pad(p.ids, (0, width - p.ids.shape[1]), value=pad_id) for p in parts])
        mask = torch.cat([F.pad(p.loss_mask, (0, width - p.loss_mask.shape[1])) for p in parts])
        return Packed(ids, mask)


def pack(tokenizer, pairs: Sequence[tuple[str, str]], max_len: int | None = None) -> Packed:
    """Encode (prefix, target) pairs; loss falls on the target tokens only."""
    rows, masks = [], []
    for prefix, target in pairs:
        p, a = encode_qa(tokenizer, prefix, target)
        seq = p + a
        if max_len is not None and len(seq) > max_len:
            raise ValueError(f"example {prefix!r} -> {target!r} is {len(seq)} tokens, longer than the model's "
                             f"context of {max_len}; raise n_ctx in the model config.")
        rows.append(seq)
        m = [False] * len(seq)
        for t in range(len(p) - 1, len(seq) - 1):
            m[t] = True
        masks.append(m)
    width = max(len(r) for r in rows) if rows else 1
    pad = tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (r, m) in enumerate(zip(rows, masks)):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(m)] = torch.tensor(m)
    return Packed(ids, mask)


def answer_loss(logits: torch.Tensor, batch: Packed, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on answer tokens. logits [b, seq, vocab] -> scalar (or [b] for 'per_example')."""
    targets = batch.ids[:, 1:]
    lp = logits[:, :-1].float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [b, seq-1]
    m = batch.loss_mask[:, :-1].float()
    if reduction == "per_example":
        return -(lp * m).sum(1) / m.sum(1).clamp(min=1)
    return -(lp * m).sum() / m.sum().clamp(min=1)


@torch.no_grad()
def answer_token_accuracy(logits: torch.Tensor, batch: Packed) -> torch.Tensor:
    """[b] bool: every answer token is the argmax under teacher forcing (= greedy for 1-token answers)."""
    pred = logits[:, :-1].argmax(-1)
    ok = (pred == batch.ids[:, 1:]) | ~batch.loss_mask[:, :-1]
    return ok.all(1)
