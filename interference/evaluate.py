"""Per-fact evaluation: greedy answers, gold log-probabilities, outcomes, SliCK categories.

Why per fact: the paper's claim is about *which* known facts get lost, so every evaluation
returns one row per fact, never only an average.

Batching groups prompts of equal token length, so no padding or attention mask is involved and
the numbers are exact for any causal LM (our native model and Hugging Face ones alike).
"""
from __future__ import annotations

import re
import string
from collections import defaultdict
from dataclasses import dataclass, asdict
from typing import Sequence

import numpy as np
import torch

from interference.data import Fact
from interference.models import model_device, model_logits
from interference.tokenizer import encode_qa

ABSTAIN = frozenset({"unknown", "i dont know", "i do not know", "idk", "not sure"})
SLICK_CATEGORIES = ("HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown")
_PUNCT = re.compile("[" + re.escape(string.punctuation.replace("_", "")) + "]")


def normalize_answer(s: str) -> str:
    """SQuAD-style: lowercase, drop punctuation (except '_') and articles, squeeze spaces."""
    s = _PUNCT.sub(" ", s.lower())
    return " ".join(w for w in s.split() if w not in ("a", "an", "the"))


@dataclass
class FactResult:
    fact_id: str
    prediction: str
    correct: bool
    gold_logprob: float  # log p(gold answer tokens | prompt), teacher-forced
    confidence: float  # p(greedy answer tokens | prompt)
    outcome: str  # correct | abstain | hallucination (wrong, confident) | wrong (wrong, unsure)

    def to_dict(self) -> dict:
        return asdict(self)


def outcome_of(correct: bool, prediction: str, confidence: float, threshold: float = 0.5) -> str:
    if correct:
        return "correct"
    if normalize_answer(prediction) in ABSTAIN:
        return "abstain"
    return "hallucination" if confidence >= threshold else "wrong"


def _groups(tokenizer, facts: Sequence[Fact]):
    """Bucket facts by (prompt length, answer length) so each bucket is one dense tensor."""
    buckets: dict[tuple[int, int], list[tuple[int, list[int], list[int]]]] = defaultdict(list)
    for i, f in enumerate(facts):
        p, a = encode_qa(tokenizer, f.prompt, f.answer)
        buckets[(len(p), len(a))].append((i, p, a))
    return buckets


def _chunks(items: list, size: int):
    for s in range(0, len(items), size):
        yield items[s: s + size]


@torch.no_grad()
def _decode(model, prompts: torch.Tensor, n_tokens: int, temperature: float, n_samples: int,
            generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy (temperature 0) or sampled continuation of ``n_tokens`` tokens.

    Returns (tokens [b, n, L], logprob of those tokens [b, n], first-step logits [b, vocab]).
    The first step runs once per prompt and is sampled ``n_samples`` times, so the common case of
    one-token answers costs a single forward pass however many samples are asked for.
    """
    b = prompts.shape[0]
    logits = model_logits(model, prompts)[:, -1].float()
    first = logits
    seqs = prompts.repeat_interleave(n_samples, 0)
    logp_total = torch.zeros(b * n_samples, device=prompts.device)
    out = []
    for step in range(n_tokens):
        if step > 0:
            logits = model_logits(model, seqs)[:, -1].float()
        elif n_samples > 1:
            logits = logits.repeat_interleave(n_samples, 0)
        logp = logits.log_softmax(-1)
        if temperature <= 0:
            nxt = logp.argmax(-1)
        else:
            probs = (logits / temperature).softmax(-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        logp_total += logp.gather(-1, nxt[:, None]).squeeze(-1)
        out.append(nxt)
        seqs = torch.cat([seqs, nxt[:, None]], 1)
    toks = torch.stack(out, -1).view(b, n_samples, n_tokens)
    return toks, logp_total.view(b, n_samples), first


@torch.no_grad()
def score_facts(model, tokenizer, facts: Sequence[Fact], batch_size: int = 512,
                confidence_threshold: float = 0.5) -> list[FactResult]:
    """Greedy answer (as many tokens as the gold answer), exact match after normalisation, gold
    log-prob and outcome for every fact, in the order given."""
    was_training = model.training
    model.eval()
    dev = model_device(model)
    results: list[FactResult | None] = [None] * len(facts)
    for (lp, la), items in _groups(tokenizer, facts).items():
        for chunk in _chunks(items, batch_size):
            idx = [i for i, _, _ in chunk]
            prompts = torch.tensor([p for _, p, _ in chunk], device=dev)
            gold = torch.tensor([a for _, _, a in chunk], device=dev)  # [b, la]
            toks, logp, first = _decode(model, prompts, la, 0.0, 1, None)
            if la == 1:
                gold_lp = first.log_softmax(-1).gather(-1, gold).squeeze(-1)
            else:
                full = torch.cat([prompts, gold[:, :-1]], 1)
                lps = model_logits(model, full)[:, lp - 1:].float().log_softmax(-1)
                gold_lp = lps.gather(-1, gold[..., None]).squeeze(-1).sum(-1)
            for j, i in enumerate(idx):
                pred = tokenizer.decode(toks[j, 0].tolist(), skip_special_tokens=True).strip()
                correct = normalize_answer(pred) == normalize_answer(facts[i].answer)
                conf = float(logp[j, 0].exp())
                results[i] = FactResult(facts[i].fact_id, pred, correct, float(gold_lp[j]), conf,
                                        outcome_of(correct, pred, conf, confidence_threshold))
    model.train(was_training)
    return results  # type: ignore[return-value]


def accuracy(results: Sequence[FactResult]) -> float:
    return sum(r.correct for r in results) / len(results) if results else float("nan")


@torch.no_grad()
def sample_correct_counts(model, tokenizer, facts: Sequence[Fact], n_samples: int, temperature: float,
                          seed: int = 0, batch_size: int = 512) -> list[int]:
    """How many of ``n_samples`` temperature samples answer each fact correctly."""
    was_training = model.training
    model.eval()
    dev = model_device(model)
    gen = torch.Generator(device=dev).manual_seed(seed)
    counts = [0] * len(facts)
    for (_, la), items in _groups(tokenizer, facts).items():
        for chunk in _chunks(items, max(1, batch_size // max(1, n_samples if la > 1 else 1))):
            prompts = torch.tensor([p for _, p, _ in chunk], device=dev)
            toks, _, _ = _decode(model, prompts, la, temperature, n_samples, gen)
            for j, (i, _, _) in enumerate(chunk):
                gold = normalize_answer(facts[i].answer)
                if la == 1:  # compare ids directly: decoding 20 samples x every fact is the slow part
                    gold_id = chunk[j][2][0]
                    counts[i] = int((toks[j, :, 0] == gold_id).sum())
                else:
                    counts[i] = sum(normalize_answer(tokenizer.decode(t.tolist(), skip_special_tokens=True)) == gold
                                    for t in toks[j])
    model.train(was_training)
    return counts


@dataclass
class SliCKResult:
    fact_id: str
    category: str
    p_greedy: float  # share of prompt variants answered right greedily
    p_sample: float  # share of temperature samples (over all variants) that are right

    def to_dict(self) -> dict:
        return asdict(self)


def slick_category(p_greedy: float, p_sample: float) -> str:
    """Gekhman et al. (2024): HighlyKnown if greedy is always right, MaybeKnown if sometimes,
    WeaklyKnown if greedy never but sampling sometimes, Unknown if never."""
    if p_greedy >= 1.0:
        return "HighlyKnown"
    if p_greedy > 0:
        return "MaybeKnown"
    return "WeaklyKnown" if p_sample > 0 else "Unknown"


def slick_categorize(model, tokenizer, variants: Sequence[Sequence[Fact]], n_samples: int = 20,
                     temperature: float = 0.5, seed: int = 0) -> list[SliCKResult]:
    """SliCK categories from several prompt variants of the same facts (paraphrased QA templates
    or different few-shot prefixes); ``variants[v][i]`` is fact i asked with variant v."""
    if not variants:
        raise ValueError("slick_categorize needs at least one prompt variant.")
    n = len(variants[0])
    if any(len(v) != n or [f.fact_id for f in v] != [f.fact_id for f in variants[0]] for v in variants):
        raise ValueError("every prompt variant must list the same facts in the same order.")
    greedy = [0] * n
    sampled = [0] * n
    for v, facts in enumerate(variants):
        for i, r in enumerate(score_facts(model, tokenizer, facts)):
            greedy[i] += r.correct
        if n_samples > 0:
            for i, c in enumerate(sample_correct_counts(model, tokenizer, facts, n_samples, temperature, seed + v)):
                sampled[i] += c
    V = len(variants)
    total = max(1, V * n_samples)
    return [SliCKResult(variants[0][i].fact_id, slick_category(greedy[i] / V, sampled[i] / total),
                        greedy[i] / V, sampled[i] / total) for i in range(n)]


def few_shot_variants(facts: Sequence[Fact], exemplars: Sequence[Fact], k: int = 4, n_variants: int = 4,
                      seed: int = 0, sep: str = "\n") -> list[list[Fact]]:
    """Prompt variants for real data: each variant prefixes k different exemplar QA pairs."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n_variants):
        shots = rng.sample(list(exemplars), k)
        prefix = sep.join(f"{s.prompt} {s.answer}" for s in shots) + sep
        out.append([Fact(**{**f.to_dict(), "prompt": prefix + f.prompt}) for f in facts])
    return out


def category_counts(results: Sequence[SliCKResult]) -> dict[str, int]:
    counts = {c: 0 for c in SLICK_CATEGORIES}
    for r in results:
        counts[r.category] += 1
    return counts


def outcomes(model, tok, facts: Sequence[Fact]) -> tuple[np.ndarray, list[str]]:
    """(correct [n] bool, greedy predictions) of ``facts``."""
    res = score_facts(model, tok, facts)
    return np.array([r.correct for r in res], dtype=bool), [r.prediction for r in res]
