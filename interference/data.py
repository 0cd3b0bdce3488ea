"""Facts: the unit everything is measured on, and loaders for real EntityQuestions-style data.

A ``Fact`` is one (subject, relation, answer) with the prompt that asks for it. The synthetic
world and a JSONL file of real questions produce the same objects, so every later stage
(evaluation, fine-tuning, probes) runs unchanged on either.
"""
from __future__ import annotations

import dataclasses
import json
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


def load_entity_questions(path: str | Path, prompt_template: str = "Q: {question} A:") -> list[Fact]:
    """Load EntityQuestions-style JSONL (or a directory of them) through ``datasets``.

    Each record needs ``question`` and ``answers`` (list or string); ``subject``/``relation`` are
    used when present (EntityQuestions files are named by relation, e.g. ``P19.test.json``).
    """
    import datasets

    path = Path(path)
    files = sorted(path.glob("*.json*")) if path.is_dir() else [path]
    if not files or not all(f.exists() for f in files):
        raise DataError(f"no EntityQuestions files at {path}; pass a .jsonl/.json file or a directory of them.")
    facts: list[Fact] = []
    for f in files:
        ds = datasets.load_dataset("json", data_files=str(f), split="train")
        missing = {"question", "answers"} - set(ds.column_names)
        if missing:
            raise DataError(f"{f} lacks field(s) {sorted(missing)}; each record needs 'question' and 'answers'.")
        relation_default = f.name.split(".")[0]
        for i, rec in enumerate(ds):
            answers = rec["answers"]
            answer = answers[0] if isinstance(answers, list) else str(answers)
            subject = rec.get("subject") or rec["question"]
            facts.append(Fact(
                fact_id=f"{relation_default}:{i}",
                subject=subject,
                entity_id=str(rec.get("subject_id") or subject),  # the same subject is one entity across files
                relation=rec.get("relation") or relation_default,
                answer=answer,
                prompt=prompt_template.format(question=rec["question"]),
                split=f.stem,
            ))
    return facts


def save_facts(path: str | Path, facts: Iterable[Fact]) -> None:
    from interference.io import atomic_write_text
    atomic_write_text(path, "".join(json.dumps(f.to_dict()) + "\n" for f in facts))


def load_facts(path: str | Path) -> list[Fact]:
    return [Fact.from_dict(json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]
