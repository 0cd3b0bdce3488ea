"""Facts: the unit everything is measured on, and loaders for real EntityQuestions-style data.

A ``Fact`` is one (subject, relation, answer) with the prompt that asks for it. The synthetic
world and a JSONL file of real questions produce the same objects, so every later stage
(evaluation, fine-tuning, probes) runs unchanged on either.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


@dataclass(frozen=True)
class Fact:
    """``fact_id`` is an opaque key: never parse it. Who the fact is about is ``entity_id`` (all
    facts of one entity share it; the synthetic world's entity number as a string, a real data
    set's subject), what is asked is ``relation``."""

    fact_id: str
    subject: str
    relation: str
    answer: str
    prompt: str  # the QA prompt, ending right before the answer
    split: str = ""  # where the fact came from (world split, or a data set's name)
    key_style: str = "semantic"
    entity_id: str = ""  # last, with a default, so positional construction in older code still works

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Fact":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


class DataError(ValueError):
    """A data file we cannot turn into facts."""


# EntityQuestions ships one file per relation and split, e.g. ``P19.train.json`` (a JSON list,
# or one record per line); anything else in a data directory is ignored.
_EQ_NAME = re.compile(r"^(P\d+)\.(train|dev|test)\.jsonl?$")
_JSONL_FIELDS = ("subject", "relation", "question", "answers")


@dataclass(frozen=True)
class QARecord:
    """One question with every accepted answer (aliases); ``fact.answer`` is the first alias."""
    fact: Fact
    aliases: tuple[str, ...]


def _json_rows(f: Path) -> list[tuple[int, object]]:
    """(line number, parsed value) of a JSON list file or a JSONL file, read fresh from disk.

    Read with ``json`` rather than ``datasets``: its cache keyed on mtime returned the old
    content of a file rewritten within the same second.
    """
    raw = f.read_bytes()
    if not raw.strip():
        raise DataError(f"{f} is empty; it needs one question record per line (or a JSON list of them).")
    if raw.lstrip()[:1] == b"[":  # EntityQuestions' own layout: one JSON list per file
        try:
            rows = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise DataError(f"{f} line {line} is not UTF-8 text; re-save the file as UTF-8.") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{f} line {e.lineno} is not valid JSON ({e.msg}); fix or remove that line.") from None
        if not isinstance(rows, list):
            raise DataError(f"{f} holds a JSON {type(rows).__name__}, not a list of question records.")
        # a list carries no line numbers per record; report record numbers as "record N"
        return [(-(i + 1), r) for i, r in enumerate(rows)]
    out = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line.decode("utf-8"))))
        except UnicodeDecodeError:
            raise DataError(f"{f} line {n} is not UTF-8 text; re-save the file as UTF-8.") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{f} line {n} is not valid JSON ({e.msg}); fix or remove that line.") from None
    return out


def _where(f: Path, n: int) -> str:
    return f"{f} line {n}" if n > 0 else f"{f} record {-n}"


def _text(value, field_name: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        shown = "null" if value is None else type(value).__name__ if not isinstance(value, str) else "empty"
        raise DataError(f"{where}: field {field_name!r} is {shown}; it must be a non-empty string.")
    return value.strip()


def _answers(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        shown = "null" if value is None else f"a {type(value).__name__}"
        raise DataError(f"{where}: field 'answers' is {shown}; it must be a string or a list of strings.")
    if not value:
        raise DataError(f"{where}: field 'answers' is an empty list; give at least one answer or drop the record.")
    if not all(isinstance(a, str) and a.strip() for a in value):
        raise DataError(f"{where}: field 'answers' holds a non-string or empty entry; every answer must be a non-empty string.")
    return tuple(dict.fromkeys(a.strip() for a in value))  # de-duplicated, order kept


def _subject_from_questions(questions: list[str]) -> list[str]:
    """Subjects of one relation's questions: what remains after the words every question shares
    at the start and the end (EntityQuestions asks each relation with one template, e.g.
    "Where was [X] born?"). With a single question the whole question is its own subject."""
    words = [q.split() for q in questions]
    if len(words) < 2:
        return list(questions)
    pre = 0
    while all(len(w) > pre for w in words) and len({w[pre] for w in words}) == 1:
        pre += 1
    suf = 0
    while all(len(w) > pre + suf for w in words) and len({w[-1 - suf] for w in words}) == 1:
        suf += 1
    return [" ".join(w[pre: len(w) - suf]) or q for w, q in zip(words, questions)]


def data_files(path: str | Path) -> list[Path]:
    """The files ``path`` names: itself, or a directory's EntityQuestions / JSONL files."""
    path = Path(path)
    if path.is_dir():
        eq = sorted(p for p in path.iterdir() if _EQ_NAME.match(p.name))
        files = eq or sorted(p for p in path.glob("*.jsonl"))
        if not files:
            raise DataError(f"{path} holds no EntityQuestions files (P*.train.json, P*.dev.json, P*.test.json) "
                            "and no .jsonl file; pass such a directory or one JSONL file.")
        return files
    if not path.is_file():
        raise DataError(f"no data file or directory at {path}; pass an EntityQuestions directory or a JSONL file.")
    return [path]


def load_qa_records(path: str | Path, prompt_template: str = "Q: {question} A:") -> list[QARecord]:
    """Questions with all their answers from EntityQuestions files or one JSONL file.

    Two layouts: EntityQuestions (files named ``P<id>.<split>.json``, records ``{"question",
    "answers"}``; relation and split come from the name, the subject from the relation's question
    template) or any other JSONL, whose records need ``subject``, ``relation``, ``question`` and
    ``answers``. Every bad record is refused with its file and line, never passed on as text.
    """
    records: list[QARecord] = []
    for f in data_files(path):
        m = _EQ_NAME.match(f.name)
        rows = _json_rows(f)
        required = ("question", "answers") if m else _JSONL_FIELDS
        parsed = []
        for n, row in rows:
            where = _where(f, n)
            if not isinstance(row, dict):
                raise DataError(f"{where} is a JSON {type(row).__name__}, not a record with fields {list(required)}.")
            for k in required:
                if k not in row:
                    raise DataError(f"{where} lacks field {k!r}; every record needs {', '.join(map(repr, required))}.")
            parsed.append((n, _text(row["question"], "question", where), _answers(row["answers"], where), row))
        if not parsed:
            raise DataError(f"{f} holds no records; it needs one question record per line (or a JSON list of them).")
        if m:
            relation, split = m.group(1), m.group(2)
            subjects = [_text(r["subject"], "subject", _where(f, n)) if r.get("subject") is not None else s
                        for (n, _, _, r), s in zip(parsed, _subject_from_questions([q for _, q, _, _ in parsed]))]
        else:
            relation, split = None, f.stem
            subjects = [_text(r["subject"], "subject", _where(f, n)) for n, _, _, r in parsed]
        for i, ((n, question, answers, row), subject) in enumerate(zip(parsed, subjects)):
            rel = relation or _text(row["relation"], "relation", _where(f, n))
            records.append(QARecord(Fact(
                fact_id=f"{rel}.{split}:{i}" if relation else f"{f.stem}:{n}",
                subject=subject, relation=rel, answer=answers[0],
                prompt=prompt_template.format(question=question), split=split,
                # the same subject is one entity across relations and files
                entity_id=str(row.get("subject_id") or subject)), answers))
    ids = [r.fact.fact_id for r in records]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path} names the same file twice; pass each data file once.")
    return _one_per_question(records, path)


_noted: set[str] = set()  # data paths whose duplicate/contradiction notes were printed in this process


def _one_per_question(records: list[QARecord], path) -> list[QARecord]:
    """One record per (relation, question). A question asked twice with the same answers is kept
    once (a copy in another split would be trained on *and* held out); one asked with different
    answers (no answer that every copy accepts) is dropped entirely (which answer a model "knows"
    is then undefined). Each is one note on stderr; the remaining records keep their fact ids."""
    import sys
    groups: dict[tuple[str, str], list[QARecord]] = {}
    for r in records:
        groups.setdefault((r.fact.relation, " ".join(r.fact.prompt.split()).lower()), []).append(r)
    def agree(g: list[QARecord]) -> bool:  # some answer every copy accepts
        return bool(set.intersection(*({a.strip().lower() for a in x.aliases} for x in g)))
    dups = [g for g in groups.values() if len(g) > 1 and agree(g)]
    clash = [g for g in groups.values() if len(g) > 1 and not agree(g)]
    if not dups and not clash:
        return records
    drop = {id(x) for g in dups for x in g[1:]} | {id(x) for g in clash for x in g}
    if str(path) not in _noted:
        _noted.add(str(path))
        if dups:
            first, second = dups[0][0].fact, dups[0][1].fact
            print(f"note: {path}: {sum(len(g) - 1 for g in dups)} duplicate question(s) (e.g. {first.prompt!r} as "
                  f"{first.fact_id} and {second.fact_id}) are kept once.", file=sys.stderr)
        if clash:
            g = clash[0]
            print(f"note: {path}: {len(clash)} question(s) are given contradicting answers (e.g. {g[0].fact.prompt!r}: "
                  f"{list(g[0].aliases)} vs {list(g[1].aliases)}) and are left out.", file=sys.stderr)
    kept = [r for r in records if id(r) not in drop]
    if not kept:
        raise DataError(f"{path} holds no question with one consistent answer; every question contradicts another.")
    return kept


def load_entity_questions(path: str | Path, prompt_template: str = "Q: {question} A:") -> list[Fact]:
    """Facts (first answer as the gold one) from EntityQuestions files or a JSONL file."""
    return [r.fact for r in load_qa_records(path, prompt_template)]


def save_facts(path: str | Path, facts: Iterable[Fact]) -> None:
    from interference.io import atomic_write_text, json_line
    atomic_write_text(path, "".join(json_line(f.to_dict()) for f in facts))


def load_facts(path: str | Path) -> list[Fact]:
    return [Fact.from_dict(json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]
