"""Tiny real-architecture models and an EntityQuestions-format fixture, built once per session.

A random model knows nothing, so SliCK on it finds no Known fact and no real-data run could
start. The fixture's answers are therefore skewed: 3/4 of P1's answers are "London", half of
P2's are "math", and P3 never answers "London". ``taught_model_dir`` trains a tiny model for a
few steps on P1 and P2 in the few-shot form SliCK asks them in, so it learns each relation's
majority answer: P1 ~75% and P2 ~50% Known (kept by the 30% filter), P3 ~0% (dropped). That is
seconds of training where memorising individual facts took minutes on 2 shared cores.
"""
from __future__ import annotations

import functools
import json
import random
import tempfile
from pathlib import Path

import torch
from transformers.utils import logging as _hf_logging

_hf_logging.disable_progress_bar()  # keep the CLI tests' stderr to the one line under test

FIRST = ["Ada", "Alan", "Grace", "Kurt", "Emmy", "Carl", "Marie", "Niels", "Lise", "Paul"]
LAST = ["Lovelace", "Turing", "Hopper", "Godel", "Noether", "Gauss", "Curie", "Bohr", "Meitner", "Dirac"]
CITIES = ["London", "Paris", "Vienna", "Berlin", "Rome", "Oslo", "Madrid", "Prague"]
FIELDS = ["math", "physics", "chemistry", "logic", "music"]
TEMPLATES = {"P1": ("Where was {} born ?", CITIES), "P2": ("What did {} study ?", FIELDS),
             "P3": ("Which city did {} visit ?", CITIES)}
N_PER_RELATION = {"P1": 40, "P2": 40, "P3": 12}


def eq_rows() -> dict[str, list[dict]]:
    """relation -> records with a subject (kept for teaching; the files carry only question/answers)."""
    rng = random.Random(0)
    people = [f"{a} {b}" for a in FIRST for b in LAST]
    rng.shuffle(people)
    out = {}
    majority = {"P1": ("London", 4), "P2": ("math", 2), "P3": (None, 1)}  # value, every n-th differs
    for rel, (tpl, values) in TEMPLATES.items():
        value, every = majority[rel]
        others = [v for v in values if v not in (value, "London")]
        out[rel] = [{"subject": p, "question": tpl.format(p),
                     "answers": [value if value and i % every else rng.choice(others)]}
                    for i, p in enumerate(people[: N_PER_RELATION[rel]])]
    return out


def write_eq_dir(d: Path) -> Path:
    """EntityQuestions layout: P<id>.train.json (a JSON list) and P<id>.test.json (JSONL)."""
    d.mkdir(parents=True, exist_ok=True)
    for rel, rows in eq_rows().items():
        plain = [{"question": r["question"], "answers": r["answers"]} for r in rows]
        cut = len(plain) * 3 // 4
        (d / f"{rel}.train.json").write_text(json.dumps(plain[:cut]))
        (d / f"{rel}.test.json").write_text("".join(json.dumps(r) + "\n" for r in plain[cut:]))
    return d


@functools.lru_cache(maxsize=None)
def tokenizer():
    from interference.tokenizer import build_tokenizer
    words = {"Q:", "A:"} | set(FIRST) | set(LAST) | set(CITIES) | set(FIELDS)
    for tpl, _ in TEMPLATES.values():
        words |= set(tpl.replace("{}", "").split())
    return build_tokenizer(sorted(words))


def hf_model(arch: str, vocab: int):
    import transformers as t
    if arch == "gpt2":
        return t.GPT2LMHeadModel(t.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                              bos_token_id=2, eos_token_id=3))
    if arch == "gpt_neox":
        return t.GPTNeoXForCausalLM(t.GPTNeoXConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                                    num_hidden_layers=2, num_attention_heads=2,
                                                    max_position_embeddings=128, bos_token_id=2, eos_token_id=3))
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=128, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    cls = {"llama": (t.LlamaForCausalLM, t.LlamaConfig), "qwen2": (t.Qwen2ForCausalLM, t.Qwen2Config),
           "mistral": (t.MistralForCausalLM, t.MistralConfig)}[arch]
    return cls[0](cls[1](**common))


_ROOT = Path(tempfile.mkdtemp(prefix="interference-real-"))


@functools.lru_cache(maxsize=None)
def model_dir(arch: str) -> Path:
    """A random tiny ``arch`` model with the fixture tokenizer, saved with save_pretrained."""
    torch.manual_seed(0)
    tok = tokenizer()
    d = _ROOT / arch
    hf_model(arch, len(tok)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@functools.lru_cache(maxsize=None)
def eq_dir() -> Path:
    return write_eq_dir(_ROOT / "eq")


def _few_shot_lines(rows, rng, n_shots=4):
    """One training sequence: n_shots + 1 QA pairs of one relation, as SliCK prompts look."""
    pick = rng.sample(rows, n_shots + 1)
    return " ".join(f"Q: {r['question']} A: {r['answers'][0]}" for r in pick)


@functools.lru_cache(maxsize=None)
def taught_model_dir(arch: str = "llama", steps: int = 25) -> Path:
    """``arch`` after a few seconds of training on P1 and P2 in few-shot form."""
    torch.manual_seed(0)
    tok = tokenizer()
    model = hf_model(arch, len(tok))
    rows = eq_rows()
    by_rel = {"P1": rows["P1"], "P2": rows["P2"]}
    rng = random.Random(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        seqs = [_few_shot_lines(by_rel[rng.choice(["P1", "P2"])], rng) for _ in range(8)]
        ids = torch.tensor([tok(s)["input_ids"] for s in seqs])
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    d = _ROOT / f"{arch}-taught"
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@functools.lru_cache(maxsize=None)
def eq_dir_long_names() -> Path:
    """``eq_dir`` with three-word subjects ("Ada Grace Lovelace"): three tokens each, as the
    localized experiment's targets need (it keeps 1 or 2 of a target's pieces in a new name)."""
    d = _ROOT / "eq-long"
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2)
    for rel, rows in eq_rows().items():
        plain = []
        for r in rows:
            first, last = r["subject"].split()
            longer = f"{first} {rng.choice([x for x in FIRST if x != first])} {last}"
            plain.append({"question": r["question"].replace(r["subject"], longer), "answers": r["answers"]})
        cut = len(plain) * 3 // 4
        (d / f"{rel}.train.json").write_text(json.dumps(plain[:cut]))
        (d / f"{rel}.test.json").write_text("".join(json.dumps(r) + "\n" for r in plain[cut:]))
    return d


KNOWING = Path(__file__).parent / "fixtures" / "knowing"  # scripts/make_knowing_fixture.py: a model that knows


@functools.lru_cache(maxsize=None)
def knowing_data_subset(n_train: int = 30, n_test: int = 8) -> Path:
    """The knowing fixture's data cut to ``n_train`` trained and ``n_test`` never-seen facts per
    relation (the first ones of each file): SliCK and a quick grid then fit in a test's budget."""
    d = _ROOT / f"knowing-{n_train}-{n_test}"
    d.mkdir(parents=True, exist_ok=True)
    for f in sorted((KNOWING / "data").iterdir()):
        if f.name.endswith(".train.json"):
            (d / f.name).write_text(json.dumps(json.loads(f.read_text())[:n_train]))
        else:
            (d / f.name).write_text("".join(f.read_text().splitlines(keepends=True)[:n_test]))
    return d


# the quick flags every real-model run_hypothesis test passes
HYP_ARGS = ["--quick", "--exemplar-sets", "2", "--samples", "2", "--no-progress", "--device", "cpu"]
