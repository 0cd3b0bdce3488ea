"""EntityQuestions-style files load into the same Fact objects as the synthetic world, and every
bad record is refused with its file and line."""
import json
import os

import pytest

from interference.data import DataError, load_entity_questions, load_facts, load_qa_records, save_facts


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_entity_questions_directory_loads_with_subjects_and_aliases(tmp_path):
    (tmp_path / "P19.train.json").write_text(json.dumps([
        {"question": "Where was Ada Lovelace born?", "answers": ["London", "Marylebone"]},
        {"question": "Where was Alan Turing born?", "answers": "Maida Vale"}]))
    _jsonl(tmp_path / "P19.test.json", [{"question": "Where was Grace Hopper born?", "answers": ["New York City"]},
                                        {"question": "Where was Kurt Godel born?", "answers": ["Brno"]}])
    (tmp_path / "README.txt").write_text("ignored")
    recs = load_qa_records(tmp_path)
    facts = [r.fact for r in recs]
    assert [f.subject for f in facts] == ["Grace Hopper", "Kurt Godel", "Ada Lovelace", "Alan Turing"]
    assert [f.split for f in facts] == ["test", "test", "train", "train"]
    assert {f.relation for f in facts} == {"P19"}
    assert recs[2].aliases == ("London", "Marylebone") and facts[2].answer == "London"
    assert facts[0].prompt == "Q: Where was Grace Hopper born? A:"
    assert len({f.fact_id for f in facts}) == 4
    assert facts[0].entity_id == "Grace Hopper"  # the subject names the entity across files
    save_facts(tmp_path / "facts.jsonl", facts)
    assert load_facts(tmp_path / "facts.jsonl") == facts


def test_plain_jsonl_needs_all_four_fields(tmp_path):
    f = _jsonl(tmp_path / "facts.jsonl", [
        {"subject": "Ada Lovelace", "relation": "born_in", "question": "Where was Ada Lovelace born?", "answers": ["London"]},
        {"subject": "Alan Turing", "relation": "born_in", "question": "Where was Alan Turing born?"}])
    with pytest.raises(DataError, match=r"facts.jsonl line 2 lacks field 'answers'"):
        load_entity_questions(f)
    g = _jsonl(tmp_path / "more.jsonl", [
        {"subject": "Ada", "subject_id": "Q7259", "relation": "job", "question": "What was Ada's job?", "answers": "x"},
        {"subject": "Ada", "relation": "born_in", "question": "Where was Ada born?", "answers": "y"}])
    assert [x.entity_id for x in load_entity_questions(g)] == ["Q7259", "Ada"]


def test_rewritten_file_with_same_mtime_is_read_again(tmp_path):
    f = _jsonl(tmp_path / "P1.test.json", [{"question": "Q one x?", "answers": ["a"]}])
    st = os.stat(f)
    assert load_entity_questions(f)[0].answer == "a"
    _jsonl(f, [{"question": "Q one x?", "answers": ["b"]}])
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert load_entity_questions(f)[0].answer == "b"


BAD = {
    "null answers": ('{"question": "q?", "answers": null}\n', r"line 1: field 'answers' is null"),
    "dict answers": ('{"question": "q?", "answers": ["x"]}\n{"question": "q?", "answers": {"a": 1}}\n',
                     r"line 2: field 'answers' is a dict"),
    "null question": ('{"question": null, "answers": ["x"]}\n', r"line 1: field 'question' is null"),
    "empty file": ("", r"is empty"),
    "bad json": ('{"question": "q?", "answers": ["x"]}\n{"question": \n', r"line 2 is not valid JSON"),
    "empty answers": ('{"question": "q?", "answers": []}\n', r"line 1: field 'answers' is an empty list"),
    "missing field": ('{"answers": ["x"]}\n', r"line 1 lacks field 'question'"),
    "not a record": ('["q?", "x"]\n'.replace("[", "[[", 1).replace("]", "]]", 1), r"record 1 is a JSON list"),
    "number answer": ('{"question": "q?", "answers": [3]}\n', r"non-string"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_records_are_named_by_file_and_line(tmp_path, case):
    text, pattern = BAD[case]
    f = tmp_path / "P7.dev.json"
    f.write_text(text)
    with pytest.raises(DataError, match=r"P7\.dev\.json " + pattern if "line" in pattern or "record" in pattern else pattern):
        load_entity_questions(f)


def test_non_utf8_bytes_and_missing_paths_are_named(tmp_path):
    f = tmp_path / "P7.dev.json"
    f.write_bytes(b'{"question": "q?", "answers": ["x"]}\n{"question": "caf\xe9?", "answers": ["x"]}\n')
    with pytest.raises(DataError, match=r"line 2 is not UTF-8"):
        load_entity_questions(f)
    with pytest.raises(DataError, match="no data file"):
        load_entity_questions(tmp_path / "missing.jsonl")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="holds no EntityQuestions files"):
        load_entity_questions(tmp_path / "empty_dir")
