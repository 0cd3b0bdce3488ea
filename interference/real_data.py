"""A real model and real closed-book QA data through the same pipeline as the synthetic world.

SliCK as Gekhman et al. (2024) ran it on EntityQuestions:

- each fact is asked with few-shot prompts: ``n_shots`` exemplars of the *same relation*, and
  ``n_exemplar_sets`` different random exemplar sets (our reading of the paper: 10 sets of 4);
- per set, one greedy answer and ``n_samples`` answers sampled at temperature 0.5 (16 by our
  reading of the paper; the issue text says 20; it is a flag either way);
- an answer is right when, after SQuAD normalisation, it equals *any* alias of the gold answer;
- HighlyKnown / MaybeKnown / WeaklyKnown / Unknown from the share of right greedy and sampled
  answers (``interference.evaluate.slick_category``);
- only relations where at least ``min_known_share`` (the paper: 30%) of facts are Known (any
  category but Unknown) are used; the SFT set is k Known + k Unknown facts of those relations.

Answers are read as a reader would (``evaluate.read_facts``): decoded to the newline that ends a
few-shot line, right when the whole answer equals any alias after normalisation; samples come
from one KV-cached batched decode per prompt. A Known fact's gold answer becomes the alias the
model gave greedily, so training and every later evaluation ask for what the model itself says.

The SliCK table of a (model, data, settings) triple is cached under ``$INTERFERENCE_CACHE``,
keyed by a fingerprint of the model files and the data files' *content*, never their mtime.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from interference.data import Fact, QARecord, data_files, load_qa_records
from interference.distributed import eval_batch_size_for
from interference.evaluate import SLICK_CATEGORIES, slick_category
from interference.io import atomic_write_text, check_fields, config_hash
from interference.sft_data import SFTData, SFTDataConfig, SFTDataError

KNOWN = ("HighlyKnown", "MaybeKnown", "WeaklyKnown")


@dataclass(frozen=True)
class SliCKConfig:
    n_shots: int = 4  # exemplars per prompt, all of the asked fact's relation
    n_exemplar_sets: int = 10  # different random exemplar sets per fact
    n_samples: int = 16  # temperature samples per exemplar set
    temperature: float = 0.5
    max_per_relation: int | None = None  # categorise at most this many facts per relation (cost cap)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_shots < 0 or self.n_exemplar_sets < 1 or self.n_samples < 0:
            raise SFTDataError("SliCK needs n_shots >= 0, n_exemplar_sets >= 1 and n_samples >= 0.")
        if not self.temperature > 0:
            raise SFTDataError(f"SliCK temperature {self.temperature} must be positive.")
        if self.max_per_relation is not None and self.max_per_relation < 1:
            raise SFTDataError("max_per_relation must be at least 1 when set.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SliCKConfig":
        return cls(**check_fields(cls, d, SFTDataError, "SliCK"))


@dataclass(frozen=True)
class RealSpec:
    """Which real model and data a run uses; stored in the run's config.json."""
    model: str
    data: str
    slick: dict = dataclasses.field(default_factory=lambda: SliCKConfig().to_dict())
    trust_remote_code: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ prompts
def exemplar_sets(records: Sequence[QARecord], cfg: SliCKConfig) -> dict[str, list[list[Fact]]]:
    """relation -> ``n_exemplar_sets`` lists of ``n_shots + 1`` exemplars (one spare, used when
    the asked fact is itself an exemplar). Drawn from the relation's ``train`` split when it has
    one, as the paper draws exemplars from training data."""
    by_rel: dict[str, list[Fact]] = defaultdict(list)
    for r in records:
        by_rel[r.fact.relation].append(r.fact)
    out = {}
    for rel, facts in sorted(by_rel.items()):
        pool = [f for f in facts if f.split == "train"] or facts
        if len(pool) < cfg.n_shots + 1:
            raise SFTDataError(f"relation {rel} has {len(pool)} facts to draw exemplars from, fewer than "
                               f"{cfg.n_shots + 1} ({cfg.n_shots} shots + 1 spare); lower --shots or add data.")
        rng = random.Random(f"{cfg.seed}-{rel}")
        out[rel] = [rng.sample(pool, cfg.n_shots + 1) for _ in range(cfg.n_exemplar_sets)]
    return out


def few_shot_prompt(fact: Fact, exemplars: Sequence[Fact], n_shots: int, sep: str = "\n") -> str:
    shots = [e for e in exemplars if e.fact_id != fact.fact_id][:n_shots]
    return "".join(f"{e.prompt} {e.answer}{sep}" for e in shots) + fact.prompt


# ------------------------------------------------------------------ SliCK
def slick_chosen(records: Sequence[QARecord], cfg: SliCKConfig) -> list[QARecord]:
    """The records SliCK categorises: all, or ``max_per_relation`` of each relation (a pure
    function of the records and settings, so a cached table can be checked for completeness)."""
    if cfg.max_per_relation is None:
        return list(records)
    rng = random.Random(f"cap-{cfg.seed}")
    by_rel: dict[str, list[QARecord]] = defaultdict(list)
    for r in records:
        by_rel[r.fact.relation].append(r)
    return [r for rel in sorted(by_rel) for r in
            (rng.sample(by_rel[rel], cfg.max_per_relation) if len(by_rel[rel]) > cfg.max_per_relation
             else by_rel[rel])]


def slick_real(model, tokenizer, records: Sequence[QARecord], cfg: SliCKConfig) -> dict[str, dict]:
    """fact_id -> {category, p_greedy, p_sample, answer (the alias the model gave, if any),
    relation, split} for every record (or ``max_per_relation`` of each relation).

    Each exemplar set asks every fact once: one greedy answer decoded to the newline and
    ``n_samples`` samples from one KV-cached batched decode (``evaluate.sample_alias_counts``);
    an answer is right when it equals any alias after normalisation. The categories are those of
    the first implementation (one scored copy per alias, every step re-running the whole prompt
    for every sample), which the tests check on a fixed seed; it cost ~3 s per fact on 2 cores.
    """
    from interference.evaluate import alias_match, read_facts, sample_alias_counts
    sets = exemplar_sets(records, cfg)
    chosen = slick_chosen(records, cfg)
    aliases = [list(dict.fromkeys(r.aliases)) for r in chosen]
    greedy_hits = [[0] * len(a) for a in aliases]
    sample_hits = [0] * len(chosen)
    for v in range(cfg.n_exemplar_sets):
        asked = [dataclasses.replace(r.fact, prompt=few_shot_prompt(r.fact, sets[r.fact.relation][v], cfg.n_shots))
                 for r in chosen]
        bs = eval_batch_size_for(model, tokenizer, asked)  # 4-shot prompts x a 150k vocabulary: size by memory
        for i, res in enumerate(read_facts(model, tokenizer, asked, batch_size=bs)):
            for a, alias in enumerate(aliases[i]):
                if alias_match(res.prediction, [alias]):
                    greedy_hits[i][a] += 1
                    break
        if cfg.n_samples:
            counts = sample_alias_counts(model, tokenizer, asked, aliases, cfg.n_samples, cfg.temperature,
                                         cfg.seed + v, batch_size=bs)
            for i, c in enumerate(counts):
                sample_hits[i] += sum(c)
    out = {}
    for i, r in enumerate(chosen):
        p_greedy = sum(greedy_hits[i]) / cfg.n_exemplar_sets
        p_sample = sample_hits[i] / max(1, cfg.n_exemplar_sets * cfg.n_samples)
        best = max(range(len(aliases[i])), key=lambda a: (greedy_hits[i][a], -a))
        out[r.fact.fact_id] = {"category": slick_category(p_greedy, p_sample), "p_greedy": p_greedy,
                               "p_sample": p_sample,
                               "answer": aliases[i][best] if greedy_hits[i][best] else r.fact.answer,
                               "relation": r.fact.relation, "split": r.fact.split}
    return out


def kept_relations(slick: dict[str, dict], min_known_share: float) -> list[str]:
    """Relations where at least ``min_known_share`` of categorised facts are Known."""
    by_rel: dict[str, list[str]] = defaultdict(list)
    for row in slick.values():
        by_rel[row["relation"]].append(row["category"])
    return sorted(rel for rel, cats in by_rel.items()
                  if sum(c in KNOWN for c in cats) / len(cats) >= min_known_share)


def build_real_sft_data(records: Sequence[QARecord], slick: dict[str, dict], cfg: SFTDataConfig) -> SFTData:
    """SFT set (n_known Known + n_unknown Unknown facts) and the three evaluation sets, drawn from
    relations that pass the Known-share filter; the same sets as ``sft_data.build_sft_data``."""
    relations = kept_relations(slick, cfg.min_known_share)
    if not relations:
        counts = {c: sum(r["category"] == c for r in slick.values()) for c in SLICK_CATEGORIES}
        raise SFTDataError(f"no relation keeps >= {cfg.min_known_share:.0%} Known facts for this model "
                           f"(SliCK over all relations: {counts}); use a model that knows more of this data "
                           "or lower --min-known-share.")
    facts = {r.fact.fact_id: r.fact for r in records}
    rng = random.Random(f"real-sft-{cfg.seed}")

    def pool(cats) -> list[str]:
        ids = sorted(i for i, row in slick.items() if row["relation"] in relations and row["category"] in cats)
        rng.shuffle(ids)
        return ids

    def asked(i: str) -> Fact:  # a Known fact asks for the alias the model itself gave
        return dataclasses.replace(facts[i], answer=slick[i]["answer"])

    highly, unknown = pool(("HighlyKnown",)), pool(("Unknown",))
    need = cfg.n_known + cfg.n_task + 1
    if len(highly) < need:
        raise SFTDataError(f"the model knows only {len(highly)} HighlyKnown facts in relations {relations}, fewer "
                           f"than the {cfg.n_known} Known SFT + {cfg.n_task} task + 1 stability facts asked for; "
                           "lower --n-facts or the Known share, or raise --max-per-relation.")
    if len(unknown) < cfg.n_unknown:
        raise SFTDataError(f"only {len(unknown)} Unknown facts exist in relations {relations}, fewer than the "
                           f"{cfg.n_unknown} asked for; lower --n-facts or --unknown-fraction.")
    known = [asked(i) for i in highly[: cfg.n_known]]
    task = [asked(i) for i in highly[cfg.n_known: cfg.n_known + cfg.n_task]]
    stability = [asked(i) for i in highly[cfg.n_known + cfg.n_task:][: cfg.n_stability]]
    new = [facts[i] for i in unknown[: cfg.n_unknown]]
    train = known + new
    rng.shuffle(train)
    format_facts = list(known) or task  # at 100% Unknown the format is taught on the task facts
    return SFTData(train=train, eval_sets={"task": task, "plasticity": list(new), "stability": stability},
                   known_ids=[f.fact_id for f in known], unknown_ids=[f.fact_id for f in new],
                   format_facts=format_facts, relations=relations)


class RealCorpus:
    """Stands where the synthetic ``World`` stands for methods that replay or anchor on
    pre-existing knowledge (replay, EWC): its 'pre-training pairs' are Known facts that are in
    no SFT or evaluation set."""

    def __init__(self, records: Sequence[QARecord], slick: dict[str, dict], data: SFTData) -> None:
        used = {f.fact_id for f in data.train} | {f.fact_id for s in data.eval_sets.values() for f in s}
        self.pairs = [(r.fact.prompt, slick[r.fact.fact_id]["answer"]) for r in records
                      if r.fact.fact_id in slick and slick[r.fact.fact_id]["category"] in KNOWN
                      and r.fact.fact_id not in used]

    def pretraining_pairs(self) -> list[tuple[str, str]]:
        return list(self.pairs)


# ------------------------------------------------------------------ fingerprints and cache
def _file_digest(h, f: Path, block: int = 1 << 24) -> None:
    """Name, size and every byte, streamed: weights changed anywhere (not only in the first and
    last MiB, which is all an earlier version read) give another fingerprint, and so another
    SliCK table."""
    size = f.stat().st_size
    h.update(f"{f.name}:{size}:".encode())
    with open(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            h.update(chunk)


def _edge_digest(h, f: Path, edge: int = 1 << 20) -> None:
    size = f.stat().st_size
    h.update(f"{f.name}:{size}:".encode())
    with open(f, "rb") as fh:
        h.update(fh.read(edge))
        if size > 2 * edge:
            fh.seek(size - edge)
            h.update(fh.read(edge))


def _model_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))


_fingerprints: dict[tuple, str] = {}  # (path, files' names, sizes, mtimes) -> fingerprint, this process only


def model_dir_fingerprint(path: str | Path) -> str:
    """sha256 (16 hex digits) over every model file's name, size and bytes (about 3 s per GiB on
    one CPU core). Computed once per process for files whose names, sizes and mtimes stay the
    same: a run asks for it several times (SliCK cache, cells, the finished-run check)."""
    files = _model_files(Path(path))
    stamp = (str(Path(path).resolve()), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if stamp not in _fingerprints:
        h = hashlib.sha256()
        for f in files:
            _file_digest(h, f)
        _fingerprints[stamp] = h.hexdigest()[:16]
    return _fingerprints[stamp]


def legacy_model_fingerprint(path: str | Path) -> str:
    """The fingerprint runs made before every byte was hashed carry (first and last MiB of each
    file); a finished run stamped with it is still recognised as made from this model."""
    h = hashlib.sha256()
    for f in _model_files(Path(path)):
        _edge_digest(h, f)
    return h.hexdigest()[:16]


def data_fingerprint(path: str | Path) -> str:
    h = hashlib.sha256()
    for f in data_files(path):
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def slick_cache_dir(spec: RealSpec, fingerprint: str | None = None) -> Path:
    from interference.bases import cache_root
    # "read": tables read to the newline against any alias; the first implementation's tables (read
    # for each alias's token length) sit under other keys and are never mixed with these
    key = {"model": fingerprint or model_dir_fingerprint(spec.model), "data": data_fingerprint(spec.data),
           "slick": spec.slick, "read": "to-newline-any-alias"}
    return cache_root() / f"real-{config_hash(key)}"


SLICK_SEAL = "slick.seal.json"  # {"file_sha256": of slick.jsonl}, written after it (write_checked_json)


def _read_slick(f: Path, expected: set[str] | None = None) -> tuple[dict[str, dict] | None, str]:
    """(table, "") of a cached SliCK file, or (None, why it is not used). The table must cover
    exactly the ``expected`` fact ids (a file truncated at a line boundary parses fine but lacks
    rows) with a known category per row, and match its seal when it has one."""
    from interference.io import read_checked_json, sha256_file
    if not f.is_file():
        return None, "missing"
    seal = f.parent / SLICK_SEAL
    if seal.exists():
        meta, why = read_checked_json(seal, legacy_ok=False)
        if meta is None or meta.get("file_sha256") != sha256_file(f):
            return None, f"it does not match its seal {seal.name} ({why or 'checksum differs'})"
    try:
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line]
        table = {r.pop("fact_id"): r for r in rows}
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError, AttributeError, TypeError):
        return None, "it is not one JSON row per fact"
    bad = next((k for k, r in table.items() if not isinstance(r, dict) or r.get("category") not in SLICK_CATEGORIES
                or not isinstance(r.get("relation"), str)), None)
    if bad is not None:
        return None, f"its row for {bad} has no valid category or relation"
    if expected is not None and set(table) != expected:
        return None, f"it covers {len(set(table) & expected)} of the {len(expected)} facts it should"
    return table, ""


def cached_slick(spec: RealSpec, model, tokenizer, records: Sequence[QARecord], dist=None) -> tuple[dict[str, dict], Path]:
    """SliCK table for this (model, data, settings), computed once and stored as JSONL. Under
    ``accelerate launch`` the main process computes it while the others wait, then read it. A
    damaged, truncated or edited table is computed again with a note, never read."""
    import sys

    from interference.io import atomic_write_json, sha256_file, write_checked_json
    from interference.bases import FINGERPRINT_FILE
    fp = model_dir_fingerprint(spec.model)
    d = slick_cache_dir(spec, fp)
    f = d / "slick.jsonl"
    cfg = SliCKConfig.from_dict(spec.slick)
    expected = {r.fact.fact_id for r in slick_chosen(records, cfg)}
    if dist is not None and not dist.is_main:
        dist.barrier()
        table, why = _read_slick(f, expected)
        if table is None:
            raise SFTDataError(f"the main process did not leave a readable SliCK table at {f} ({why}).")
        return table, d
    table, why = _read_slick(f, expected)
    if table is None:
        if why != "missing":
            print(f"note: the cached SliCK table {f} is not used ({why}); computing it again.", file=sys.stderr)
        table = slick_real(model, tokenizer, records, cfg)
        atomic_write_text(f, "".join(json.dumps({"fact_id": k, **v}) + "\n" for k, v in table.items()))
        write_checked_json(d / SLICK_SEAL, {"file_sha256": sha256_file(f)})
    # what teachers cached beside this table are keyed by: the directory is named by this very
    # fingerprint, so a file saying anything else was edited and is put right
    from interference.bases import _stored_fingerprint
    if _stored_fingerprint(d / FINGERPRINT_FILE) != fp:
        atomic_write_json(d / FINGERPRINT_FILE, {"weights": fp})
    if dist is not None:
        dist.barrier()
    return table, d


# ------------------------------------------------------------------ entry points
def prepare_real(spec: RealSpec, data_cfg: SFTDataConfig, device=None, dist=None):
    """(model, tokenizer, corpus, cache_dir, SFTData) for a run on a real model and real data."""
    from interference.models import load_hf_model

    records = load_qa_records(spec.data)
    model, tok = load_hf_model(spec.model, device=device, trust_remote_code=spec.trust_remote_code)
    slick, cache = cached_slick(spec, model, tok, records, dist)
    data = build_real_sft_data(records, slick, data_cfg)
    return model, tok, RealCorpus(records, slick, data), cache, data


# The flags live with the other shared flags, in the torch-free interference.cli (fast --help).
from interference.cli import add_real_arguments as add_arguments  # noqa: E402


def max_positions(hf_cfg: dict) -> int | None:
    """The longest sequence a model's config allows (GPT-2's learned positions index out of range
    past it), or None when the config does not say."""
    for k in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(hf_cfg.get(k), int) and hf_cfg[k] > 0:
            return hf_cfg[k]
    return None


def check_lengths(records: Sequence[QARecord], tokenizer, hf_cfg: dict) -> None:
    """Refuse a question (with its longest answer) longer than the model's positions: one
    sentence naming it, instead of an IndexError deep in the first forward pass."""
    from interference.data import DataError
    from interference.tokenizer import encode_qa
    limit = max_positions(hf_cfg)
    if limit is None:
        return
    for r in records:
        n = max(sum(map(len, encode_qa(tokenizer, r.fact.prompt, a))) for a in r.aliases)
        if n > limit:
            raise DataError(f"question {r.fact.fact_id} ({r.fact.prompt[:60]!r}...) is {n} tokens with its answer, "
                            f"more than the model's {limit} positions; shorten or drop that record.")


def resolve_model_and_data(args) -> RealSpec | None:
    """A validated ``RealSpec`` from ``--model``/``--data``, or None on the synthetic path.

    Checks everything that can be checked without loading weights (model directory, family,
    tokenizer, every data record), so a bad path is refused before any run directory is claimed.
    Raises ``ModelError`` / ``DataError`` / ``SFTDataError`` with one sentence.
    """
    from interference.models import ModelError, _hf_config, family_of, load_hf_tokenizer

    model, data = getattr(args, "model", None), getattr(args, "data", None)
    if model is None and data is None:
        return None
    if model is None or data is None:
        raise ModelError("--model and --data go together: a real model needs real data and vice versa.")
    path = Path(model)
    cfg = _hf_config(path)
    family_of(model_type=cfg["model_type"], architecture=(cfg.get("architectures") or [None])[0])
    tok = load_hf_tokenizer(path)
    check_lengths(load_qa_records(data), tok, cfg)
    slick = {k: v for k, v in {"n_shots": getattr(args, "shots", None),
                               "n_exemplar_sets": getattr(args, "exemplar_sets", None),
                               "n_samples": getattr(args, "samples", None),
                               "max_per_relation": getattr(args, "max_per_relation", None)}.items() if v is not None}
    return RealSpec(model=str(path.resolve()), data=str(Path(data).resolve()),
                    slick=SliCKConfig(**slick).to_dict(), trust_remote_code=bool(getattr(args, "trust_remote_code", False)))
