"""EntityQuestions-style files load into the same Fact objects as the synthetic world."""
import json

import pytest

from interference.data import DataError, load_entity_questions, load_facts, save_facts


def test_entity_questions_jsonl_loads(tmp_path):
    f = tmp_path / "P19.test.json"
    rows = [{"question": "Where was Ada Lovelace born?", "answers": ["London", "Marylebone"]},
            {"question": "Where was Alan Turing born?", "answers": "Maida Vale"}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    facts = load_entity_questions(f)
    assert [x.answer for x in facts] == ["London", "Maida Vale"]
    assert facts[0].relation == "P19" and facts[0].prompt == "Q: Where was Ada Lovelace born? A:"
    assert len({x.fact_id for x in facts}) == 2
    # without a subject field the question names the entity; with one, facts of one subject share it
    assert facts[0].entity_id == "Where was Ada Lovelace born?"
    g = tmp_path / "P106.test.json"
    g.write_text("".join(json.dumps({"question": q, "answers": ["x"], "subject": "Ada"}) + "\n"
                         for q in ("What was Ada's job?", "What did Ada do?")))
    assert {x.entity_id for x in load_entity_questions(g)} == {"Ada"}
    save_facts(tmp_path / "facts.jsonl", facts)
    assert load_facts(tmp_path / "facts.jsonl") == facts


def test_bad_entity_questions_input_is_named(tmp_path):
    with pytest.raises(DataError, match="no EntityQuestions files"):
        load_entity_questions(tmp_path / "missing.jsonl")
    f = tmp_path / "P1.json"
    f.write_text(json.dumps({"text": "no question here"}) + "\n")
    with pytest.raises(DataError, match="lacks field"):
        load_entity_questions(f)
