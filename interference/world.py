"""The controlled synthetic knowledge world.

Why synthetic: nothing can be downloaded here, and the paper's question needs *pre-existing*
knowledge whose overlap with new knowledge we can dial. So entities get names built from a
shared inventory of sub-word pieces (names share tokens the way real names do), facts are
(entity, relation, value) triples, and new entities are generated at a chosen distance from
existing ones:

- ``semantic`` keys recombine pieces of existing names (the paper recombines real place names);
  ``shared_pieces`` and ``overlap_with`` choose whose pieces and how many.
- ``uuid`` keys use a separate piece inventory that no name ever uses. Those pieces are *not*
  new tokens: pre-training sees every one of them in a non-name role (a filler corpus of random
  piece strings, see ``World.filler_pairs``), so a uuid fact cannot be stored in embedding rows
  that pre-training never trained and that no old fact reads. With never-seen pieces (the first
  version of this world) uuid keys were confounded with fresh parameters: a capacity-like route,
  not "no overlap"; the paper's uuids are likewise made of ordinary sub-word tokens.
- ``disjoint`` keys use pieces that occur in pre-training only in the names of ``pretrain_qa``
  entities that are never watched (``n_disjoint_pretrain`` of them, named from a reserved
  inventory of ``n_disjoint_pieces``): trained, name-role tokens that share nothing with the
  watched (``statement_only``) entities. Those pre-trained disjoint entities are also *known*
  facts with names unrelated to the watched ones (a Known-only control with matched keys).

Everything is a pure function of the config and its seed, so a world is fully described by
its JSON.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from interference.io import check_fields
from interference.data import Fact

# Each relation: (value kind, statement templates, QA templates). The value always ends the
# sequence, so "knowing" a fact is predicting its last token(s) from the prefix, in statements
# and in QA alike. Several statement paraphrases matter: knowledge seen in one fixed phrasing
# is stored in a form the QA format cannot reach (Allen-Zhu & Li, Physics of LMs 3.1).
RELATIONS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "born_in": (
        "city",
        ("{name} was born in {value}", "the birthplace of {name} is {value}",
         "{name} came into the world in {value}", "{name} , born in {value}"),
        ("Q: where was {name} born ? A: {value}", "Q: what is the birthplace of {name} ? A: {value}",
         "Q: in which city was {name} born ? A: {value}"),
    ),
    "works_as": (
        "job",
        ("{name} works as a {value}", "the job of {name} is {value}",
         "{name} earns a living as a {value}", "{name} , by trade a {value}"),
        ("Q: what does {name} do for work ? A: {value}", "Q: what is the job of {name} ? A: {value}",
         "Q: what is {name} 's profession ? A: {value}"),
    ),
    "lives_in": (
        "city",
        ("{name} lives in {value}", "the home of {name} is in {value}",
         "{name} has settled in {value}", "{name} , a resident of {value}"),
        ("Q: where does {name} live ? A: {value}", "Q: where is the home of {name} ? A: {value}",
         "Q: in which city does {name} reside ? A: {value}"),
    ),
    "speaks": (
        "lang",
        ("{name} speaks {value}", "the language of {name} is {value}",
         "{name} talks in {value}", "{name} , a speaker of {value}"),
        ("Q: which language does {name} speak ? A: {value}", "Q: what is the language of {name} ? A: {value}",
         "Q: what tongue does {name} use ? A: {value}"),
    ),
    "plays": (
        "sport",
        ("{name} plays {value}", "the sport of {name} is {value}",
         "{name} competes in {value}", "{name} , who plays {value}"),
        ("Q: which sport does {name} play ? A: {value}", "Q: what is the sport of {name} ? A: {value}",
         "Q: what game does {name} compete in ? A: {value}"),
    ),
    "likes": (
        "color",
        ("{name} likes the color {value}", "the favorite color of {name} is {value}",
         "{name} prefers {value}", "{name} , a lover of {value}"),
        ("Q: which color does {name} like ? A: {value}", "Q: what is the favorite color of {name} ? A: {value}",
         "Q: what color does {name} prefer ? A: {value}"),
    ),
}
KEY_STYLES = ("semantic", "uuid", "disjoint")
# The answer that relabels an Unknown question as "I don't know" (Gekhman et al. 2024's control).
# One word, so the one-token greedy decode of a one-token gold answer can produce it, and listed
# in evaluate.ABSTAIN, so evaluation counts it as an abstention, never as a wrong answer.
IDK_ANSWER = "unknown"
FILLER_MARKER = "code"  # opens a filler line: "code <p1> ... <pk>" -> answer <p1>
_FILLER_MIN, _FILLER_MAX = 3, 5  # pieces per filler line
ENTITY_SPLITS = ("pretrain_qa", "statement_only", "unseen")
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_HEX = "0123456789abcdef"


class WorldConfigError(ValueError):
    """A world config that cannot produce a world."""


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    # Piece inventory: 64 CV/CVC syllables. Large enough that a new name can sit at distance
    # 0, 1 or 2 shared pieces from a chosen entity without colliding with an existing name
    # (30 pieces made "semantic" names near-collisions in the prototype).
    n_pieces: int = 64
    min_name_pieces: int = 2
    max_name_pieces: int = 3
    n_uuid_pieces: int = 96  # an inventory no name uses; only `uuid` keys draw from it
    # Filler corpus lines in pre-training made of uuid pieces (each piece occurs in it), so uuid
    # tokens have trained embeddings without ever being a name. 400 lines of 3-5 pieces put each
    # of 96 pieces ~17 times in an epoch, about as often as a name piece occurs in names.
    n_filler: int = 400
    # Reserved pieces naming only `n_disjoint_pretrain` of the pretrain_qa entities (never
    # watched); `disjoint` keys draw from them. 24 pieces give 24^2 + 24^3 ~ 14k names, room for
    # the 100 pre-trained ones and hundreds of new ones.
    n_disjoint_pieces: int = 24
    n_disjoint_pretrain: int = 100
    # Entity splits. pretrain_qa: statements + QA in pre-training (teaches the QA format);
    # statement_only: statements only (the pre-existing knowledge we watch degrade);
    # unseen: never seen (Unknown facts to teach in SFT, and a chance-level control).
    n_pretrain_qa: int = 400
    n_statement_only: int = 400
    n_unseen: int = 400
    relations: tuple[str, ...] = ("born_in", "works_as", "lives_in", "speaks")
    n_values: int = 40  # per value kind; chance for a random guess is 1/40
    n_statement_templates: int = 4
    n_qa_templates: int = 3

    def __post_init__(self) -> None:
        self._check_types()
        total = self.n_pretrain_qa + self.n_statement_only + self.n_unseen
        if min(self.n_pretrain_qa, self.n_statement_only, self.n_unseen) < 0 or total <= 0:
            raise WorldConfigError(
                f"the world needs at least one entity and no negative split sizes (got "
                f"pretrain_qa={self.n_pretrain_qa}, statement_only={self.n_statement_only}, "
                f"unseen={self.n_unseen}); set positive entity counts.")
        if self.n_values < 2:
            raise WorldConfigError(
                f"n_values={self.n_values} leaves nothing to get wrong; use a value vocabulary of at least 2.")
        unknown = [r for r in self.relations if r not in RELATIONS]
        if unknown or not self.relations:
            raise WorldConfigError(
                f"unknown relation(s) {unknown or '(none given)'}; choose from {sorted(RELATIONS)}.")
        if len(set(self.relations)) != len(self.relations):
            raise WorldConfigError(f"relations {list(self.relations)} repeat a name; list each once.")
        if not 2 <= self.min_name_pieces <= self.max_name_pieces:
            raise WorldConfigError(
                f"name lengths {self.min_name_pieces}-{self.max_name_pieces} pieces are invalid; "
                "use 2 <= min_name_pieces <= max_name_pieces.")
        if not 3 <= self.n_pieces <= len(_all_pieces()):
            raise WorldConfigError(f"n_pieces={self.n_pieces} must be between 3 and {len(_all_pieces())}.")
        if self.min_name_pieces > self.n_pieces:  # names use distinct pieces: none could ever be drawn
            raise WorldConfigError(f"names of at least {self.min_name_pieces} distinct pieces cannot be made from "
                                   f"n_pieces={self.n_pieces}; raise n_pieces or lower min_name_pieces.")
        if self.n_uuid_pieces < self.max_name_pieces:
            raise WorldConfigError(f"n_uuid_pieces={self.n_uuid_pieces} must be at least max_name_pieces="
                                   f"{self.max_name_pieces}.")
        if self.n_filler * _FILLER_MIN < self.n_uuid_pieces:
            raise WorldConfigError(
                f"n_filler={self.n_filler} lines of >= {_FILLER_MIN} pieces cannot show all {self.n_uuid_pieces} uuid "
                f"pieces in pre-training; use n_filler >= {-(-self.n_uuid_pieces // _FILLER_MIN)}.")
        if not 0 <= self.n_disjoint_pretrain <= self.n_pretrain_qa:
            raise WorldConfigError(f"n_disjoint_pretrain={self.n_disjoint_pretrain} must be between 0 and "
                                   f"n_pretrain_qa={self.n_pretrain_qa}.")
        if self.n_pieces + self.n_disjoint_pieces > len(_all_pieces()):
            raise WorldConfigError(f"n_pieces + n_disjoint_pieces = {self.n_pieces + self.n_disjoint_pieces} exceeds "
                                   f"the {len(_all_pieces())} syllables available; use fewer pieces.")
        d_capacity = sum(self.n_disjoint_pieces ** k for k in range(self.min_name_pieces, self.max_name_pieces + 1))
        if self.n_disjoint_pieces < self.max_name_pieces or self.n_disjoint_pretrain > d_capacity // 4:
            raise WorldConfigError(
                f"{self.n_disjoint_pretrain} disjoint-named entities do not fit in {self.n_disjoint_pieces} reserved "
                "pieces with room for new ones; raise n_disjoint_pieces or lower n_disjoint_pretrain.")
        capacity = sum(math.perm(self.n_pieces, k) for k in range(self.min_name_pieces, self.max_name_pieces + 1))
        if total - self.n_disjoint_pretrain > capacity // 2:
            raise WorldConfigError(
                f"{total} entities do not fit in {capacity} possible names with room for new ones; "
                "raise n_pieces or max_name_pieces, or use fewer entities.")
        if not 1 <= self.n_statement_templates <= 4 or not 1 <= self.n_qa_templates <= 3:
            raise WorldConfigError("use 1-4 statement templates and 1-3 QA templates.")
        need, have = self.estimated_bytes(), _available_bytes()
        if have is not None and need > have:
            raise WorldConfigError(
                f"a world of {total:,} entities needs about {need / 1e9:.1f} GB of memory to build and "
                f"pre-train, but only {have / 1e9:.1f} GB is available here; use fewer entities.")

    def _check_types(self) -> None:
        """JSON hands us strings, floats, NaN and null as readily as ints: refuse them by name
        before any arithmetic turns them into a TypeError or a NaN-sized world."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "relations":
                if not isinstance(v, (list, tuple)) or not all(isinstance(r, str) for r in v):
                    raise WorldConfigError(f"relations must be a list of relation names such as "
                                           f"{list(RELATIONS)[:2]}, not {v!r}.")
            elif not isinstance(v, int) or isinstance(v, bool):
                raise WorldConfigError(f"{f.name} must be a whole number, not {v!r} ({type(v).__name__}).")

    def estimated_bytes(self) -> int:
        """Rough peak memory to build this world and pre-train on it, so a config too large for
        the machine is refused up front instead of dying at several GB. Measured on a world of
        60,000 entities: ~0.6 KB per entity and ~0.3 KB per pre-training example kept, with a
        peak of about twice that while token lists are packed into tensors; the constants below
        round that up to 1 KB each."""
        n_ex = ((self.n_pretrain_qa + self.n_statement_only) * self.n_statement_templates
                + self.n_pretrain_qa * self.n_qa_templates) * len(self.relations)
        return self.n_entities * 1_000 + n_ex * 1_000

    @property
    def n_entities(self) -> int:
        return self.n_pretrain_qa + self.n_statement_only + self.n_unseen

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WorldConfig":
        d = dict(check_fields(cls, d, WorldConfigError, "world config"))
        if isinstance(d.get("relations"), list):
            d["relations"] = tuple(d["relations"])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "WorldConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise WorldConfigError(f"world config {path} does not exist; pass a JSON file written by WorldConfig.save.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise WorldConfigError(f"world config {path} is not valid JSON ({e}); fix or regenerate it.") from None
        except IsADirectoryError:
            raise WorldConfigError(f"world config {path} is a directory; pass a JSON file written by WorldConfig.save.") from None

    def save(self, path: str | Path) -> None:
        from interference.io import atomic_write_json
        atomic_write_json(path, self.to_dict())

    @classmethod
    def quick(cls, seed: int = 0) -> "WorldConfig":
        """A tiny world for tests and smoke runs: 3 relations, 60+60+60 entities."""
        return cls(seed=seed, n_pieces=24, n_uuid_pieces=32, n_filler=48, n_disjoint_pieces=12,
                   n_disjoint_pretrain=20, n_pretrain_qa=60, n_statement_only=60, n_unseen=60,
                   relations=("born_in", "works_as", "speaks"), n_values=12)



def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _all_pieces() -> list[str]:
    cv = [c + v for c in _CONSONANTS for v in _VOWELS]
    cvc = [c + v + e for c in _CONSONANTS for v in _VOWELS for e in "nlrs"]
    return cv + cvc


def _uuid_pieces(n: int, seed: int) -> list[str]:
    rng = random.Random(f"uuid-{seed}")
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:  # "x" prefix keeps them apart from syllable pieces and from numbers
        p = "x" + "".join(rng.choice(_HEX) for _ in range(3))
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


_STYLE_ID_OFFSET = {"semantic": 0, "disjoint": 250_000, "uuid": 500_000}  # eids never collide across styles


@dataclass(frozen=True)
class Entity:
    eid: int
    pieces: tuple[str, ...]
    split: str  # pretrain_qa | statement_only | unseen | new
    values: tuple[tuple[str, str], ...]  # (relation, value) pairs
    key_style: str = "semantic"

    @property
    def name(self) -> str:
        return " ".join(self.pieces)

    def value(self, relation: str) -> str:
        return dict(self.values)[relation]


@dataclass
class World:
    """Entities, values and renderers generated deterministically from a WorldConfig."""

    config: WorldConfig
    pieces: list[str] = field(init=False)
    uuid_pieces: list[str] = field(init=False)
    disjoint_pieces: list[str] = field(init=False)
    values: dict[str, list[str]] = field(init=False)  # value kind -> vocabulary
    entities: list[Entity] = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed)
        pool = _all_pieces()
        rng.shuffle(pool)
        self.pieces = sorted(pool[: cfg.n_pieces])
        self.disjoint_pieces = sorted(pool[cfg.n_pieces: cfg.n_pieces + cfg.n_disjoint_pieces])
        self.uuid_pieces = _uuid_pieces(cfg.n_uuid_pieces, cfg.seed)
        kinds = sorted({RELATIONS[r][0] for r in cfg.relations})
        self.values = {k: [f"{k}_{i}" for i in range(cfg.n_values)] for k in kinds}
        names: set[tuple[str, ...]] = set()
        self.entities = []
        splits = (["pretrain_qa"] * cfg.n_pretrain_qa + ["statement_only"] * cfg.n_statement_only
                  + ["unseen"] * cfg.n_unseen)
        for eid, split in enumerate(splits):
            style = "disjoint" if eid < cfg.n_disjoint_pretrain else "semantic"  # first pretrain_qa ones
            inventory = self.disjoint_pieces if style == "disjoint" else self.pieces
            while True:
                k = rng.randint(cfg.min_name_pieces, cfg.max_name_pieces)
                pieces = tuple(rng.choice(inventory) for _ in range(k))
                if pieces not in names and len(set(pieces)) == k:
                    break
            names.add(pieces)
            self.entities.append(Entity(eid, pieces, split, self._draw_values(rng), style))
        self._names = names

    # ---------------------------------------------------------------- generation
    def _draw_values(self, rng: random.Random) -> tuple[tuple[str, str], ...]:
        return tuple((r, rng.choice(self.values[RELATIONS[r][0]])) for r in self.config.relations)

    def split(self, name: str) -> list[Entity]:
        return [e for e in self.entities if e.split == name]

    def new_entities(self, n: int, key_style: str = "semantic", *, seed: int = 0,
                     overlap_with: Sequence[Entity] | None = None, shared_pieces: int | None = None,
                     values_from: Sequence[Entity] | None = None) -> list[Entity]:
        """Generate ``n`` entities that never appeared in pre-training.

        key_style ``semantic``: names from the main piece inventory (the watched entities' pieces).
        With ``overlap_with`` (existing entities, cycled) the j-th new name shares exactly
        ``shared_pieces`` pieces (default: all but one) with its target at the same positions, the
        other positions drawn from pieces the target does not use, so its representation lands
        near the target's. ``disjoint``: names from the reserved inventory that only never-watched
        pre-trained entities use (``overlap_with`` then targets those). ``uuid``: names from the
        uuid inventory, which pre-training shows only in filler strings (no overlap possible).
        ``values_from`` copies value assignments (to pair entities of two key styles fact for fact).
        """
        if key_style not in KEY_STYLES:
            raise WorldConfigError(f"unknown key style {key_style!r}; choose from {list(KEY_STYLES)}.")
        if n < 0:
            raise WorldConfigError(f"cannot generate {n} entities; ask for zero or more.")
        if key_style == "uuid" and overlap_with:
            raise WorldConfigError("uuid keys share no pieces by definition; drop overlap_with or use key_style='semantic'.")
        inventory = {"semantic": self.pieces, "disjoint": self.disjoint_pieces, "uuid": self.uuid_pieces}[key_style]
        if overlap_with and any(p not in inventory for t in overlap_with for p in t.pieces):
            raise WorldConfigError(f"overlap_with targets must be named from the {key_style} inventory; pick targets "
                                   "of that key style (disjoint keys overlap only disjoint-named entities).")
        rng = random.Random(f"new-{self.config.seed}-{seed}-{key_style}")
        cfg = self.config
        taken = set(self._names)
        out: list[Entity] = []
        base_id = len(self.entities) + 1_000_000 * (1 + (seed % 1000)) + _STYLE_ID_OFFSET[key_style]
        for j in range(n):
            for _attempt in range(10_000):
                if overlap_with:
                    target = overlap_with[j % len(overlap_with)].pieces
                    keep = len(target) - 1 if shared_pieces is None else shared_pieces
                    if not 0 <= keep < len(target):
                        raise WorldConfigError(
                            f"shared_pieces={keep} must be between 0 and {len(target) - 1} for target {' '.join(target)!r}.")
                    kept = set(rng.sample(range(len(target)), keep))
                    others = [p for p in inventory if p not in target]
                    pieces = tuple(target[i] if i in kept else rng.choice(others) for i in range(len(target)))
                else:
                    k = rng.randint(cfg.min_name_pieces, cfg.max_name_pieces)
                    pieces = tuple(rng.sample(inventory, k)) if key_style == "uuid" else \
                        tuple(rng.choice(inventory) for _ in range(k))
                if pieces not in taken and len(set(pieces)) == len(pieces):
                    break
            else:
                raise WorldConfigError(f"could not place new entity {j} without a name collision; raise n_pieces.")
            taken.add(pieces)
            vals = values_from[j % len(values_from)].values if values_from else self._draw_values(rng)
            out.append(Entity(base_id + j, pieces, "new", vals, key_style))
        return out

    def filler_pairs(self) -> list[tuple[str, str]]:
        """The filler corpus: ``n_filler`` lines "code p1 .. pk" (k = 3-5 uuid pieces) -> answer p1.

        Why: it puts every uuid piece through pre-training in a role that is not a name (every
        piece occurs: the lines walk through shuffled copies of the inventory), so uuid keys use
        trained embedding rows. Copying the first piece is a task the model can learn, so the
        gradients these rows get are informative, not noise; no fact is attached to them.
        """
        rng = random.Random(f"filler-{self.config.seed}")
        stream: list[str] = []
        out = []
        for _ in range(self.config.n_filler):
            k = rng.randint(_FILLER_MIN, _FILLER_MAX)
            while len(stream) < k:
                deck = list(self.uuid_pieces)
                rng.shuffle(deck)
                stream.extend(deck)
            line, stream = stream[:k], stream[k:]
            out.append((" ".join([FILLER_MARKER] + line), line[0]))
        return out

    # ---------------------------------------------------------------- rendering
    def facts(self, entities: Sequence[Entity] | None = None, template: int = 0) -> list[Fact]:
        """One QA fact per (entity, relation), rendered with QA template ``template``."""
        ents = self.entities if entities is None else entities
        out = []
        for e in ents:
            for r in self.config.relations:
                prompt, answer = self.render_qa(e, r, template)
                out.append(Fact(fact_id=f"{e.eid}:{r}", subject=e.name, relation=r, answer=answer,
                                prompt=prompt, split=e.split, key_style=e.key_style, entity_id=str(e.eid)))
        return out

    def render_qa(self, e: Entity, relation: str, template: int = 0) -> tuple[str, str]:
        tpl = RELATIONS[relation][2][template % self.config.n_qa_templates]
        prefix = tpl.replace("{value}", "").rstrip()
        return prefix.format(name=e.name), e.value(relation)

    def render_statements(self, e: Entity, relation: str) -> list[tuple[str, str]]:
        """(prefix, value) for each statement paraphrase."""
        tpls = RELATIONS[relation][1][: self.config.n_statement_templates]
        return [(t.replace("{value}", "").rstrip().format(name=e.name), e.value(relation)) for t in tpls]

    def qa_templates(self, relation: str) -> list[str]:
        return list(RELATIONS[relation][2][: self.config.n_qa_templates])

    def vocabulary(self) -> list[str]:
        """Every word any rendering can produce (template words, all piece inventories, values, the
        filler marker and the "I don't know" answer)."""
        words: set[str] = set()
        for r in self.config.relations:
            _, stmts, qas = RELATIONS[r]
            for t in stmts + qas:
                words.update(w for w in t.split() if not w.startswith("{"))
        words.update(self.pieces)
        words.update(self.disjoint_pieces)
        words.update(self.uuid_pieces)
        words.update((IDK_ANSWER, FILLER_MARKER))
        for vs in self.values.values():
            words.update(vs)
        return sorted(words)


def shared_piece_count(a: Entity, b: Entity) -> int:
    """How many name pieces two entities share (as a multiset intersection)."""
    return len(set(a.pieces) & set(b.pieces))
