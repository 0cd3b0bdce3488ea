"""The committed fixture that *knows* entity-specific facts (``scripts/make_knowing_fixture.py``):
SliCK finds its trained facts Known and its never-seen ones Unknown, answers are read as a reader
reads them (to the newline, any alias, abstention by its string), and the fast SliCK gives the
categories of the first implementation on a fixed seed."""
from __future__ import annotations

import dataclasses
import json
import random
from collections import defaultdict
from pathlib import Path

import pytest

from interference.data import Fact, load_qa_records
from interference.evaluate import read_facts, sample_correct_counts, score_facts, slick_category
from interference.real_data import SliCKConfig, exemplar_sets, few_shot_prompt, slick_real

FIXTURE = Path(__file__).parent / "fixtures" / "knowing"


@pytest.fixture(scope="module")
def knowing():
    from interference.models import load_hf_model
    model, tok = load_hf_model(FIXTURE / "model", device="cpu")
    return model, tok, load_qa_records(FIXTURE / "data")


def _sample(records, per_split: int, seed: int = 0):
    """``per_split`` records of each (relation, split), drawn by seed."""
    by = defaultdict(list)
    for r in records:
        by[(r.fact.relation, r.fact.split)].append(r)
    rng = random.Random(seed)
    return [r for k in sorted(by) for r in rng.sample(by[k], min(per_split, len(by[k])))]


def test_slick_finds_trained_facts_known_and_unseen_ones_unknown(knowing):
    model, tok, records = knowing
    chosen = _sample(records, 6)
    cfg = SliCKConfig(n_exemplar_sets=3, n_samples=4)
    table = slick_real(model, tok, chosen, cfg)  # exemplars come from the chosen trained facts
    train = [table[r.fact.fact_id] for r in chosen if r.fact.split == "train"]
    test = [table[r.fact.fact_id] for r in chosen if r.fact.split == "test"]
    assert sum(t["category"] == "HighlyKnown" for t in train) >= 0.9 * len(train)
    assert sum(t["category"] == "Unknown" for t in test) >= 0.7 * len(test)
    # the two-alias relation: a Known fact records the alias the model gave, which is one of its aliases
    alias_of = {r.fact.fact_id: r.aliases for r in records}
    p17 = [(r.fact.fact_id, table[r.fact.fact_id]) for r in chosen if r.fact.relation == "P17"
           and table[r.fact.fact_id]["category"] == "HighlyKnown"]
    assert p17 and all(t["answer"] in alias_of[i] for i, t in p17)
    assert any(t["answer"] != alias_of[i][0] for i, t in p17), "the taught alias is sometimes the second one"


def test_reader_reads_multi_token_answers_to_the_newline_and_any_alias(knowing):
    model, tok, records = knowing
    train = [r for r in records if r.fact.split == "train"]
    sets = exemplar_sets(records, SliCKConfig())
    chosen = _sample(train, 8, seed=1)
    facts = [dataclasses.replace(r.fact, prompt=few_shot_prompt(r.fact, sets[r.fact.relation][0], 4)) for r in chosen]
    res = read_facts(model, tok, facts, aliases={r.fact.fact_id: r.aliases for r in chosen}, with_gold=True)
    assert all(len(tok(" " + r.fact.answer, add_special_tokens=False)["input_ids"]) >= 2 for r in chosen[:8])
    assert sum(x.correct for x in res) >= 0.9 * len(res)
    assert all("\n" not in x.prediction for x in res)
    # first alias only: the facts taught their second alias are now read wrong, the rest unchanged
    first = read_facts(model, tok, facts)
    taught_second = [x.prediction == r.aliases[1] for x, r in zip(res, chosen) if len(r.aliases) > 1]
    assert any(taught_second)
    for x, y, r in zip(res, first, chosen):
        if x.correct and len(r.aliases) > 1 and x.prediction == r.aliases[1] != r.aliases[0]:
            assert not y.correct
    # confidence is the whole answer's probability: at most the first token's
    import math
    for x in res:
        assert 0.0 <= x.confidence <= 1.0 and math.isfinite(x.gold_logprob)


def test_an_abstention_is_read_as_one_whatever_its_token_length(knowing):
    """Teach the fixture to answer "unknown" (6 byte-level pieces here) for a few facts: the reader
    counts those answers as abstentions, where decoding for the gold answer's length read them
    as confident wrong answers."""
    import torch
    from interference.train import SFTSpec, finetune_on
    from interference.sft_data import relabel_idk
    model, tok, records = knowing
    idk = relabel_idk([r.fact for r in _sample([r for r in records if r.fact.split == "test"], 4, seed=2)])
    assert len(tok(" unknown", add_special_tokens=False)["input_ids"]) >= 3
    torch.manual_seed(0)
    res = finetune_on(model, tok, idk, SFTSpec(lr=3e-3, batch_size=16, max_steps=40, eval_every=10,
                                               learned_at=1.01, seed=0))
    asked = [dataclasses.replace(f, answer="Drenholt") for f in idk]  # what a wrong gold would be
    read = read_facts(res.model, tok, asked)
    assert sum(r.outcome == "abstain" for r in read) >= 0.75 * len(read)
    old = score_facts(res.model, tok, asked)
    assert sum(r.outcome == "abstain" for r in old) < sum(r.outcome == "abstain" for r in read)


def _slick_first_implementation(model, tokenizer, records, cfg):
    """SliCK as first written (one copy per alias decoded for that alias's token length, every
    sample step re-running the prompt): the reference the fast one must agree with."""
    from interference.real_data import slick_chosen
    sets = exemplar_sets(records, cfg)
    chosen = slick_chosen(records, cfg)
    copies = [(i, a, r.fact) for i, r in enumerate(chosen) for a in range(len(r.aliases))]
    greedy = [[0] * len(r.aliases) for r in chosen]
    sampled = [[0] * len(r.aliases) for r in chosen]
    for v in range(cfg.n_exemplar_sets):
        asked = [Fact(**{**f.to_dict(), "fact_id": f"{f.fact_id}#{a}", "answer": chosen[i].aliases[a],
                         "prompt": few_shot_prompt(f, sets[f.relation][v], cfg.n_shots)}) for i, a, f in copies]
        for (i, a, _), res in zip(copies, score_facts(model, tokenizer, asked)):
            greedy[i][a] += res.correct
        for (i, a, _), c in zip(copies, sample_correct_counts(model, tokenizer, asked, cfg.n_samples,
                                                              cfg.temperature, cfg.seed + v)):
            sampled[i][a] += c
    return {r.fact.fact_id: slick_category(min(1.0, sum(greedy[i]) / cfg.n_exemplar_sets),
                                           max(sampled[i]) / (cfg.n_exemplar_sets * cfg.n_samples))
            for i, r in enumerate(chosen)}


def test_fast_slick_gives_the_first_implementations_categories(knowing):
    model, tok, records = knowing
    pool = _sample(records, 5, seed=3)  # 5 trained facts per relation: 4 shots + 1 spare
    cfg = SliCKConfig(n_exemplar_sets=2, n_samples=4, seed=0)
    ids = {r.fact.fact_id for r in pool}
    fast = {k: v["category"] for k, v in slick_real(model, tok, pool, cfg).items() if k in ids}
    ref = {k: v for k, v in _slick_first_implementation(model, tok, pool, cfg).items() if k in ids}
    assert fast.keys() == ref.keys()
    same = sum(fast[k] == ref[k] for k in ids)
    # greedy categories are deterministic; only WeaklyKnown vs Unknown may differ by sampling noise
    assert all(fast[k] == ref[k] or {fast[k], ref[k]} <= {"WeaklyKnown", "Unknown"} for k in ids), \
        {k: (fast[k], ref[k]) for k in ids if fast[k] != ref[k]}
    assert same >= 0.9 * len(ids)


def test_fixture_records_what_it_was_trained_to():
    info = json.loads((FIXTURE / "fixture.json").read_text())
    assert info["trained_accuracy_4shot"] >= 0.95 and info["unseen_accuracy_4shot"] <= 0.3


def test_kv_cached_decoding_reads_what_recomputing_the_whole_sequence_reads(knowing, monkeypatch):
    """The bridge's attention must extend the KV cache (transformers 5 passes it as ``cache=``);
    without that every cached step attends to itself alone and answers turn to noise."""
    import interference.evaluate as ev
    model, tok, records = knowing
    sets = exemplar_sets(records, SliCKConfig())
    chosen = _sample(records, 3, seed=4)
    facts = [dataclasses.replace(r.fact, prompt=few_shot_prompt(r.fact, sets[r.fact.relation][1], 4)) for r in chosen]
    cached = read_facts(model, tok, facts)
    monkeypatch.setattr(ev, "_hf_of", lambda m: None)  # every step re-runs the whole sequence
    full = read_facts(model, tok, facts)
    assert [r.prediction for r in cached] == [r.prediction for r in full]
    assert [r.confidence for r in cached] == pytest.approx([r.confidence for r in full], rel=1e-4, abs=1e-6)


def test_fictitious_names_fit_bpe_subjects():
    """uuid names are random token strings sharing no piece with any subject; disjoint look-alikes
    avoid every banned (target) piece while recombining the other subjects' pieces."""
    from interference.fictitious import lookalike_names, name_pieces, uuid_names
    from interference.models import load_hf_tokenizer
    tok = load_hf_tokenizer(FIXTURE / "model")
    subjects = sorted({r.fact.subject for r in load_qa_records(FIXTURE / "data")})
    pieces = {i for s in subjects for i in name_pieces(tok, s)}
    uu = uuid_names(tok, subjects, 30, seed=1)
    assert len(set(uu)) == 30 and all(" " not in n and len(name_pieces(tok, n)) == 4 for n in uu)
    assert not {i for n in uu for i in name_pieces(tok, n)} & pieces
    targets = subjects[:40]
    banned = {i for t in targets for i in name_pieces(tok, t)}
    look = lookalike_names(tok, subjects[40:], 40, seed=2, banned=banned)
    got = {i for n in look for i in name_pieces(tok, n)}
    assert not got & banned and got <= pieces and not set(look) & set(subjects)
