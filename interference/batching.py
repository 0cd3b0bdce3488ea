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

    def trim(self, width: int) -> "Packed":
        """The first ``width`` positions. With causal attention and right padding, cutting columns
        after an example's last answer token changes none of its answer logits."""
        return Packed(self.ids[:, :width], self.loss_mask[:, :width])

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
    """Cross-entropy on answer tokens. logits [b, seq, vocab] -> scalar (or [b]: 'per_example' is
    each example's mean over its answer tokens, 'per_example_sum' their sum)."""
    targets = batch.ids[:, 1:]
    lp = logits[:, :-1].float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [b, seq-1]
    m = batch.loss_mask[:, :-1].float()
    if reduction == "per_example_sum":
        return -(lp * m).sum(1)
    if reduction == "per_example":
        return -(lp * m).sum(1) / m.sum(1).clamp(min=1)
    return -(lp * m).sum() / m.sum().clamp(min=1)


@torch.no_grad()
def answer_token_accuracy(logits: torch.Tensor, batch: Packed) -> torch.Tensor:
    """[b] bool: every answer token is the argmax under teacher forcing (= greedy for 1-token answers)."""
    pred = logits[:, :-1].argmax(-1)
    ok = (pred == batch.ids[:, 1:]) | ~batch.loss_mask[:, :-1]
    return ok.all(1)


def needed_lengths(loss_mask: torch.Tensor) -> torch.Tensor:
    """[n] tokens each example needs for its answer loss: through its last answer token (the
    position after its last loss position); 1 for an example without answer tokens."""
    pos = torch.arange(loss_mask.shape[1], device=loss_mask.device)
    last = torch.where(loss_mask, pos, torch.full_like(pos, -1)).max(1).values
    return (last + 2).clamp(min=1, max=loss_mask.shape[1])


def length_groups(lengths: torch.Tensor, overhead: float) -> list[torch.Tensor]:
    """Split a batch into groups of similar length, each to be run trimmed to its own longest
    example: indices into ``lengths``, grouped to minimise the padded token count plus
    ``overhead`` tokens per group (the fixed cost of one more forward/backward call).

    Why: the pre-training corpus mixes statements (4-9 tokens) with QA (9-12 tokens), so a batch
    padded to its longest row is about a third padding, and on a CPU the time of a step is
    proportional to its tokens. Exact dynamic programming over the sorted distinct lengths
    (a dozen at most), so the cost is nothing next to a step."""
    order = torch.argsort(lengths, stable=True)
    ls = lengths[order].tolist()
    if not ls:
        return []
    ends = [i + 1 for i in range(len(ls)) if i + 1 == len(ls) or ls[i + 1] != ls[i]]  # group boundaries
    best = [0.0] + [float("inf")] * len(ends)  # best[j]: cheapest split of the first ends[j-1] rows
    cut = [0] * (len(ends) + 1)
    for j in range(1, len(ends) + 1):
        for i in range(j):
            start = ends[i - 1] if i else 0
            cost = best[i] + (ends[j - 1] - start) * ls[ends[j - 1] - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(ends)
    while j:
        i = cut[j]
        groups.append(order[(ends[i - 1] if i else 0): ends[j - 1]])
        j = i
    return groups[::-1]
