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

ABSTAIN = frozenset({"unknown", "i dont know", "i don t know", "i do not know", "idk", "not sure"})
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
def _next_token(logits: torch.Tensor, temperature: float, generator: torch.Generator | None):
    """(next token [b], log-probs [b, vocab] at temperature 1): greedy at temperature 0, else one
    draw at ``temperature``; the one sampling step of both decoders."""
    logp = logits.log_softmax(-1)
    if temperature <= 0:
        return logp.argmax(-1), logp
    return torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator).squeeze(-1), logp


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
        nxt, logp = _next_token(logits, temperature, generator)
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


# ------------------------------------------------------------------ reading as a reader would
STOP = "\n"  # one QA pair per line: an answer ends at the newline (or EOS)
NEXT_LINE = "Q:"  # where the next few-shot line begins (``data.load_qa_records``' prompt template)
MAX_ANSWER_TOKENS = 24  # a cap, not a length: answers stop at STOP long before it


def _newline_free(tokenizer) -> bool:
    from interference.tokenizer import ends_lines
    return not ends_lines(tokenizer)


def _stop_ids(tokenizer) -> frozenset[int]:
    """Ids whose text holds the stop string (a newline), plus EOS; scanned once per tokenizer. A
    tokenizer that drops newlines (the synthetic world's word-level one) cannot end a line, so
    there the answer ends where the next few-shot line begins: at ``NEXT_LINE``'s first token."""
    key = "_interference_stop_ids"
    cached = getattr(tokenizer, key, None)
    if cached is None:
        texts = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        ids = {i for i, t in enumerate(texts) if t is not None and STOP in tokenizer.convert_tokens_to_string([t])}
        if _newline_free(tokenizer):
            ids |= set(tokenizer(" " + NEXT_LINE, add_special_tokens=False)["input_ids"][:1])
        if tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        cached = frozenset(ids)
        try:
            setattr(tokenizer, key, cached)
        except AttributeError:
            pass
    return cached


def _hf_of(model):
    """The Hugging Face model inside a bridge, or None (our native models)."""
    from transformers import PreTrainedModel
    hf = getattr(model, "original_model", None) if hasattr(model, "adapter") else None
    return hf if isinstance(hf, PreTrainedModel) else None


class _CacheKwarg:
    """transformers 5 hands attention its KV cache as ``cache=``; the bridge's attention
    components read ``past_key_values=`` (or ``layer_past=``), so without this they never extend
    the cache and every cached step attends to itself alone. For the span of one decode, a
    forward pre-hook on each such component passes the cache under the name it reads."""

    def __init__(self, hf):
        self.mods = [m for m in hf.modules() if hasattr(m, "_update_kv_cache")]
        self.handles = []

    @staticmethod
    def _hook(mod, args, kwargs):
        if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None:
            return args, {**kwargs, "past_key_values": kwargs["cache"]}
        return None

    def __enter__(self):
        self.handles = [m.register_forward_pre_hook(self._hook, with_kwargs=True) for m in self.mods]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def _step(model, ids: torch.Tensor, cache, mask: torch.Tensor | None = None, pos: torch.Tensor | None = None):
    """Next-token logits [b, vocab] of ``ids`` given ``cache`` (the Hugging Face KV cache of what
    came before, or None), and the new cache. A bridge runs its Hugging Face model with the cache;
    a model without one (our native models) recomputes the whole sequence, passed in ``ids``.
    ``mask`` [b, cached + new] and ``pos`` [b, new] are the attention mask and position ids of
    left-padded rows (None: no padding)."""
    import inspect
    hf = _hf_of(model)
    if hf is None:
        return model_logits(model, ids)[:, -1].float(), None
    name = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"  # transformers 5 / 4
    kw = {name: cache} if cache is not None else {}
    if mask is not None:
        kw.update(attention_mask=mask, position_ids=pos)
    out = hf(input_ids=ids, use_cache=True, **kw)
    new = getattr(out, "cache", None)
    return out.logits[:, -1].float(), new if new is not None else getattr(out, "past_key_values", None)


@torch.no_grad()
def decode_to_stop(model, prompts: torch.Tensor, stop_ids: frozenset[int], max_new_tokens: int,
                   temperature: float = 0.0, n_samples: int = 1, generator: torch.Generator | None = None,
                   mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Continue ``prompts`` [b, p] until every row hit a stop id or ``max_new_tokens``.

    Greedy at temperature 0, else ``n_samples`` samples per prompt at ``temperature`` (the prompt
    is run once and its KV cache repeated, so samples cost one token per step each). A row that
    hit its stop leaves the batch (and the KV cache) at once: the answers of a batch are a few
    tokens long, and a batch decoded until its one wandering sample stopped cost most of SliCK's
    time. ``mask`` [b, p] marks real tokens of left-padded prompts (a bridge only; None: every
    prompt has length p). Returns (tokens [b, n, L], per-token log-probs of them [b, n, L],
    length before the stop [b, n]); positions after a row's stop hold 0. Log-probs are of the
    untempered distribution, so a sample's confidence reads like greedy's.
    """
    hf = _hf_of(model)
    if mask is not None and hf is None:
        raise ValueError("left-padded prompts need a Hugging Face model (a bridge); group native prompts by length.")
    if hf is not None:
        with _CacheKwarg(hf):
            return _decode_to_stop(model, prompts, stop_ids, max_new_tokens, temperature, n_samples, generator, mask)
    return _decode_to_stop(model, prompts, stop_ids, max_new_tokens, temperature, n_samples, generator, mask)


def _decode_to_stop(model, prompts, stop_ids, max_new_tokens, temperature, n_samples, generator, mask=None):
    b, dev = prompts.shape[0], prompts.device
    rows_n = b * n_samples
    stop = torch.tensor(sorted(stop_ids), device=dev)
    pos = None if mask is None else (mask.long().cumsum(-1) - 1).clamp(min=0)
    logits, cache = _step(model, prompts, None, mask, pos)
    seqs = prompts
    if n_samples > 1:
        logits = logits.repeat_interleave(n_samples, 0)
        if cache is not None:
            cache.batch_repeat_interleave(n_samples)
        seqs = prompts.repeat_interleave(n_samples, 0)
        if mask is not None:
            mask, pos = mask.repeat_interleave(n_samples, 0), pos.repeat_interleave(n_samples, 0)
    if pos is not None:
        pos = pos[:, -1:]
    toks = torch.zeros(rows_n, max_new_tokens, dtype=torch.long, device=dev)
    lps = torch.zeros(rows_n, max_new_tokens, device=dev)
    length = torch.full((rows_n,), max_new_tokens, dtype=torch.long, device=dev)
    rows = torch.arange(rows_n, device=dev)  # which output row each live row is
    steps = 0
    for step in range(max_new_tokens):
        nxt, logp = _next_token(logits, temperature, generator)
        toks[rows, step] = nxt
        lps[rows, step] = logp.gather(-1, nxt[:, None]).squeeze(-1)
        steps = step + 1
        hit = torch.isin(nxt, stop)
        length[rows[hit]] = step
        if bool(hit.all()) or step == max_new_tokens - 1:
            break
        if bool(hit.any()):  # finished rows leave the batch
            live = (~hit).nonzero().squeeze(-1)
            rows, nxt = rows[live], nxt[live]
            if cache is None:
                seqs = seqs[live]
            if cache is not None:
                cache.batch_select_indices(live)
            if mask is not None:
                mask, pos = mask[live], pos[live]
        if mask is not None:
            mask, pos = torch.cat([mask, torch.ones_like(mask[:, :1])], 1), pos + 1
        if cache is None:
            seqs = torch.cat([seqs, nxt[:, None]], 1)
        logits, cache = _step(model, nxt[:, None] if cache is not None else seqs, cache, mask, pos)
    return (toks[:, :steps].view(b, n_samples, -1), lps[:, :steps].view(b, n_samples, -1),
            length.view(b, n_samples))


def _answer_text(tokenizer, ids: Sequence[int]) -> str:
    text = tokenizer.decode(list(ids), skip_special_tokens=True).split(STOP)[0]
    return (text.split(NEXT_LINE)[0] if _newline_free(tokenizer) else text).strip()


def _prompt_groups(tokenizer, facts: Sequence[Fact]) -> dict[int, list[tuple[int, list[int]]]]:
    out: dict[int, list[tuple[int, list[int]]]] = defaultdict(list)
    for i, f in enumerate(facts):
        p = tokenizer(f.prompt, add_special_tokens=True)["input_ids"]
        out[len(p)].append((i, p))
    return out


def _prompt_batches(model, tokenizer, facts: Sequence[Fact], size: int):
    """(items [(index, ids)], prompts [b, p], mask [b, p] or None) covering every fact once.

    A bridge gets prompts of any length in one batch, left-padded (sorted by length first, so
    little is padding) with their attention mask: 4-shot prompts of 500 facts have ~20 different
    token lengths, and batching by length alone left most batches a few prompts small. Our native
    models take no mask, so their prompts are grouped by length as before."""
    dev = model_device(model)
    groups = _prompt_groups(tokenizer, facts)
    if _hf_of(model) is None or tokenizer.pad_token_id is None:
        for _, items in sorted(groups.items()):
            for chunk in _chunks(items, size):
                yield chunk, torch.tensor([p for _, p in chunk], device=dev), None
        return
    items = [it for _, g in sorted(groups.items()) for it in g]
    pad = int(tokenizer.pad_token_id)
    for chunk in _chunks(items, size):
        width = max(len(p) for _, p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for _, p in chunk], device=dev)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for _, p in chunk], device=dev)
        yield chunk, ids, (None if bool(mask.all()) else mask)


def alias_match(prediction: str, aliases: Sequence[str]) -> bool:
    """Exact match after normalisation against any alias."""
    p = normalize_answer(prediction)
    return any(p == normalize_answer(a) for a in aliases)


@torch.no_grad()
def read_facts(model, tokenizer, facts: Sequence[Fact], aliases: dict[str, Sequence[str]] | None = None,
               batch_size: int = 64, confidence_threshold: float = 0.5, max_new_tokens: int = MAX_ANSWER_TOKENS,
               with_gold: bool = False) -> list[FactResult]:
    """``score_facts`` as a reader would score an answer: greedy decoding to the newline (or EOS,
    at most ``max_new_tokens``), right when the answer equals *any* alias after normalisation
    (``aliases[fact_id]``; the fact's own answer when absent), an abstention whenever its string
    is one (``ABSTAIN``), whatever its token length.

    Confidence is the probability of the whole answer: exp of the *sum* of its tokens' log-probs
    (the stop excluded). Why the sum and not the mean: the outcome threshold (0.5) then reads
    "the model puts more than half its mass on exactly this answer", the same statement for a
    one-token and a five-token answer; a mean (geometric-mean probability) would call a long
    answer confident when every token is a coin flip it happens to win. On one-token answers it
    is the first-token probability ``score_facts`` uses. ``with_gold`` adds the teacher-forced
    log-prob of the fact's own answer (``gold_logprob``; nan otherwise, it costs a second pass).
    """
    was_training = model.training
    model.eval()
    dev = model_device(model)
    stop = _stop_ids(tokenizer)
    results: list[FactResult | None] = [None] * len(facts)
    gold = gold_logprobs(model, tokenizer, facts, batch_size) if with_gold else [float("nan")] * len(facts)
    for chunk, prompts, mask in _prompt_batches(model, tokenizer, facts, batch_size):
        toks, lps, length = decode_to_stop(model, prompts, stop, max_new_tokens, mask=mask)
        for j, (i, _) in enumerate(chunk):
            n = int(length[j, 0])
            pred = _answer_text(tokenizer, toks[j, 0, : n + 1].tolist())
            f = facts[i]
            correct = alias_match(pred, (aliases or {}).get(f.fact_id) or (f.answer,))
            conf = float(lps[j, 0, :n].sum().exp()) if n > 0 else 0.0
            results[i] = FactResult(f.fact_id, pred, correct, gold[i], conf,
                                    outcome_of(correct, pred, conf, confidence_threshold))
    model.train(was_training)
    return results  # type: ignore[return-value]


@torch.no_grad()
def gold_logprobs(model, tokenizer, facts: Sequence[Fact], batch_size: int = 64) -> list[float]:
    """Teacher-forced log p(answer tokens | prompt) of every fact, in order."""
    dev = model_device(model)
    out = [float("nan")] * len(facts)
    for (lp, la), items in _groups(tokenizer, facts).items():
        for chunk in _chunks(items, batch_size):
            full = torch.tensor([p + a[:-1] for _, p, a in chunk], device=dev)
            gold = torch.tensor([a for _, _, a in chunk], device=dev)
            lps = model_logits(model, full)[:, lp - 1:].float().log_softmax(-1)
            vals = lps.gather(-1, gold[..., None]).squeeze(-1).sum(-1)
            for j, (i, _, _) in enumerate(chunk):
                out[i] = float(vals[j])
    return out


@torch.no_grad()
def sample_alias_counts(model, tokenizer, facts: Sequence[Fact], aliases: Sequence[Sequence[str]], n_samples: int,
                        temperature: float, seed: int = 0, batch_size: int = 64,
                        max_new_tokens: int = MAX_ANSWER_TOKENS) -> list[list[int]]:
    """Per fact, how many of ``n_samples`` samples (decoded to the stop) equal each of its
    ``aliases`` after normalisation; one batched, KV-cached decode for all samples of a prompt."""
    was_training = model.training
    model.eval()
    dev = model_device(model)
    gen = torch.Generator(device=dev).manual_seed(seed)
    stop = _stop_ids(tokenizer)
    counts = [[0] * len(a) for a in aliases]
    norm = [[normalize_answer(x) for x in a] for a in aliases]
    for chunk, prompts, mask in _prompt_batches(model, tokenizer, facts, max(1, batch_size // max(1, n_samples))):
        toks, _, length = decode_to_stop(model, prompts, stop, max_new_tokens, temperature, n_samples, gen, mask)
        for j, (i, _) in enumerate(chunk):
            for s in range(n_samples):
                p = normalize_answer(_answer_text(tokenizer, toks[j, s, : int(length[j, s]) + 1].tolist()))
                for a, x in enumerate(norm[i]):
                    counts[i][a] += p == x
    model.train(was_training)
    return counts


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


def outcomes(model, tok, facts: Sequence[Fact], score=None) -> tuple[np.ndarray, list[str]]:
    """(correct [n] bool, greedy predictions) of ``facts``, scored by ``score`` (default
    ``score_facts``; a real model's context reads to the newline: ``read_facts``)."""
    res = (score or score_facts)(model, tok, facts)
    return np.array([r.correct for r in res], dtype=bool), [r.prediction for r in res]
