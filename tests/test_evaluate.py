"""Per-fact evaluation on constructed cases, and SliCK categories on a trained model."""
import math

import pytest
import torch

from interference.data import Fact
from interference.evaluate import (normalize_answer, outcome_of, score_facts, slick_categorize,
                                   slick_category)
from interference.tokenizer import build_tokenizer


class LookupLM(torch.nn.Module):
    """A 'model' whose next-token logits depend only on the current token: a known answer key."""

    def __init__(self, vocab: int, table: dict[int, torch.Tensor]):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.table = vocab, table

    def forward(self, ids):
        out = torch.full((*ids.shape, self.vocab), -1e4)
        for tok, logits in self.table.items():
            out[ids == tok] = logits
        return out


def test_normalization():
    assert normalize_answer("  The City_3. ") == "city_3"
    assert normalize_answer("An  apple!") == "apple"


def test_score_facts_on_a_known_answer_key():
    tok = build_tokenizer(["q", "a", "b", "x", "y"])
    ids = {w: tok.convert_tokens_to_ids(w) for w in ["a", "b", "x", "y"]}
    V = len(tok)
    after_a = torch.full((V,), -1e4)
    after_a[ids["x"]], after_a[ids["y"]] = math.log(0.8), math.log(0.2)
    after_b = torch.full((V,), -1e4)
    after_b[ids["x"]], after_b[ids["y"]] = math.log(0.3), math.log(0.7)
    model = LookupLM(V, {ids["a"]: after_a, ids["b"]: after_b})
    facts = [Fact("1", "s", "r", "x", "q a"), Fact("2", "s", "r", "x", "q b"), Fact("3", "s", "r", "y", "q a b")]
    res = score_facts(model, tok, facts)
    assert [r.prediction for r in res] == ["x", "y", "y"]
    assert [r.correct for r in res] == [True, False, True]
    assert res[0].gold_logprob == pytest.approx(math.log(0.8), abs=1e-5)
    assert res[1].gold_logprob == pytest.approx(math.log(0.3), abs=1e-5)
    assert res[1].confidence == pytest.approx(0.7, abs=1e-5)
    assert res[1].outcome == "hallucination"  # wrong with p=0.7 >= 0.5


def test_outcomes_and_slick_rule():
    assert outcome_of(False, "unknown", 0.9) == "abstain"
    assert outcome_of(False, "city_1", 0.2) == "wrong"
    assert slick_category(1.0, 0.0) == "HighlyKnown"
    assert slick_category(0.5, 0.0) == "MaybeKnown"
    assert slick_category(0.0, 0.05) == "WeaklyKnown"
    assert slick_category(0.0, 0.0) == "Unknown"


def test_slick_puts_trained_and_never_seen_facts_where_they_belong(quick_base):
    model, tok, world, _ = quick_base
    V = world.config.n_qa_templates
    trained = [world.facts(world.split("pretrain_qa"), t) for t in range(V)]
    unseen = [world.facts(world.split("unseen"), t) for t in range(V)]
    cats_t = [r.category for r in slick_categorize(model, tok, trained, n_samples=5)]
    cats_u = [r.category for r in slick_categorize(model, tok, unseen, n_samples=5)]
    assert cats_t.count("HighlyKnown") / len(cats_t) >= 0.9
    unknownish = sum(c in ("Unknown", "WeaklyKnown") for c in cats_u) / len(cats_u)
    assert unknownish >= 0.6


def test_variants_must_align():
    f = [Fact("1", "s", "r", "x", "q a")]
    with pytest.raises(ValueError, match="same facts"):
        slick_categorize(None, None, [f, [Fact("2", "s", "r", "x", "q a")]])
