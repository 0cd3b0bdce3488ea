"""Fictitious entities for a real model, built from the model's own tokenizer.

The hypotheses need new facts whose *keys* are controlled: ``semantic`` keys that look like
existing names (the paper recombines pieces of real location names) and ``uuid`` keys that share
nothing with them. On the synthetic world the name pieces are words we made up; on a real model
the pieces are the tokenizer's sub-word tokens of real subject names:

- ``lookalike_names``: each new name takes the token-length of a random real name and fills
  every position with the token at that position of another random real name, so every token
  is a real-name token (e.g. "Ada Lovelace" + "Alan Turing" -> "Ada Turing"); real names and
  repeats are rejected.
- ``uuid_names``: random token strings: a word-start piece and word-inner pieces (letters only,
  >= 2 each) that occur in no real name, glued into one word; rejected unless re-encoding gives
  exactly those ids (a word-level tokenizer, which has no inner pieces, joins whole words).

Both re-encode every candidate and keep only those whose tokens are what was intended, so the
claim "shares sub-word pieces" (or "shares none") holds for the exact ids the model will see.
"""
from __future__ import annotations

import random
from typing import Callable, Hashable, Sequence


class FictitiousError(ValueError):
    """Too few real names or usable tokens to build the entities asked for."""


def _ids(tokenizer, name: str) -> list[int]:
    # a leading space: names follow a word in every prompt, and BPE tokenizers encode " Ada" apart from "Ada"
    return tokenizer(" " + name, add_special_tokens=False)["input_ids"]


def _text(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()


def real_name_pieces(tokenizer, names: Sequence[str]) -> set[int]:
    return {i for n in names for i in _ids(tokenizer, n)}


def _draw_distinct(n: int, max_tries: int, taken: set[str], propose) -> list[str]:
    """Up to ``n`` names from ``propose()`` (a name, or None for a draw that fails its builder's
    check), none in ``taken`` (which grows), in at most ``n * max_tries`` draws: the one draw loop
    of every name builder here."""
    out: list[str] = []
    for _ in range(n * max_tries):
        if len(out) == n:
            break
        text = propose()
        if text is None or text in taken:
            continue
        taken.add(text)
        out.append(text)
    return out


def lookalike_names(tokenizer, real_names: Sequence[str], n: int, seed: int = 0, max_tries: int = 100,
                    banned: set[int] = frozenset(), taken: Sequence[str] = ()) -> list[str]:
    """``n`` new names recombining the sub-word tokens of ``real_names`` position by position,
    never using a token of ``banned`` (the disjoint arm bans its targets' pieces: with BPE nearly
    every whole name shares some piece with some target, but most pieces are shared by few)."""
    names = sorted(set(real_names))
    encoded = [_ids(tokenizer, x) for x in names]
    if len(names) < 2:
        raise FictitiousError(f"look-alike names need at least two real names to recombine; {len(names)} given.")
    pieces = set().union(*map(set, encoded)) - set(banned)
    by_pos = [[e[k] for e in encoded if len(e) > k and e[k] in pieces] for k in range(max(map(len, encoded)))]
    rng = random.Random(f"lookalike-{seed}")

    def propose() -> str | None:
        length = len(rng.choice(encoded))
        if any(not by_pos[k] for k in range(length)):
            return None
        text = _text(tokenizer, [rng.choice(by_pos[k]) for k in range(length)])
        return text if text and set(_ids(tokenizer, text)) <= pieces else None

    out = _draw_distinct(n, max_tries, set(names) | set(taken), propose)
    if len(out) < n:
        raise FictitiousError(f"only {len(out)} distinct look-alike names can be made from {len(names)} real names"
                              f"{' without the banned pieces' if banned else ''}, fewer than the {n} asked for; supply "
                              "more subjects or ask for fewer entities.")
    return out


def ordinary_tokens(tokenizer, exclude: set[int]) -> list[int]:
    """Vocabulary ids that are a whole ordinary word by themselves: they decode to letters only
    (at least two), and that word after a space encodes back to exactly this one id, so words
    joined by spaces keep exactly these ids."""
    special = set(tokenizer.all_special_ids)
    cand = [i for i in range(len(tokenizer)) if i not in special and i not in exclude]
    texts = [_text(tokenizer, [i]) for i in cand]
    keep = [(i, t) for i, t in zip(cand, texts) if len(t) >= 2 and t.isascii() and t.isalpha()]
    enc = tokenizer([" " + t for _, t in keep], add_special_tokens=False)["input_ids"] if keep else []
    return [i for (i, _), e in zip(keep, enc) if e == [i]]


def uuid_names(tokenizer, real_names: Sequence[str], n: int, n_pieces: int = 4, seed: int = 0,
               max_tries: int = 100) -> list[str]:
    """``n`` names that are random token strings, like a uuid: ``n_pieces`` random vocabulary
    pieces that occur in no real name (letters only, at least two), glued without spaces into one
    word after the first, kept only when re-encoding gives exactly those ids. Ordinary words joined
    by spaces ("Ravenhill blue ho") read as a phrase; a random string reads as nothing."""
    banned = real_name_pieces(tokenizer, real_names)
    special = set(tokenizer.all_special_ids)
    pool = [i for i in range(len(tokenizer)) if i not in special and i not in banned]
    texts = tokenizer.convert_ids_to_tokens(pool)
    word = [i for i, t in zip(pool, texts) if t is not None and
            (s := tokenizer.convert_tokens_to_string([t])).strip().isascii() and s.strip().isalpha()
            and len(s.strip()) >= 2]
    starts = [i for i in word if tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens([i])).startswith(" ")]
    start_set = set(starts)
    inner = [i for i in word if i not in start_set]  # one set, not one per vocabulary entry
    if not starts:  # a word-level tokenizer: no piece continues a word, so whole words joined by spaces
        return _word_uuid_names(tokenizer, real_names, n, min(n_pieces, 3), seed, max_tries)
    if len(starts) < 2 or len(inner) < n_pieces:
        raise FictitiousError(f"the tokenizer has only {len(starts)} word-start and {len(inner)} inner pieces outside the "
                              "real names; uuid names need more (use a larger vocabulary or fewer pieces).")
    rng = random.Random(f"uuid-{seed}")

    def propose() -> str | None:
        ids = [rng.choice(starts)] + rng.sample(inner, n_pieces - 1)
        text = _text(tokenizer, ids)
        return text if text and " " not in text and _ids(tokenizer, text) == ids else None

    return _draw_uuids(n, max_tries, real_names, propose)


def _draw_uuids(n: int, max_tries: int, real_names: Sequence[str], propose) -> list[str]:
    out = _draw_distinct(n, max_tries, set(real_names), propose)
    if len(out) < n:
        raise FictitiousError(f"only {len(out)} distinct uuid names could be made, fewer than the {n} asked for.")
    return out


def _word_uuid_names(tokenizer, real_names: Sequence[str], n: int, n_pieces: int, seed: int,
                     max_tries: int) -> list[str]:
    """uuid names for a word-level tokenizer: random whole words that occur in no real name."""
    banned = real_name_pieces(tokenizer, real_names)
    pool = ordinary_tokens(tokenizer, banned)
    if len(pool) < n_pieces:
        raise FictitiousError(f"the tokenizer has only {len(pool)} ordinary word pieces outside the real names; "
                              "uuid names need more (use a larger vocabulary or fewer pieces).")
    rng = random.Random(f"uuid-{seed}")

    def propose() -> str | None:
        text = " ".join(_text(tokenizer, [i]) for i in rng.sample(pool, n_pieces))
        return text if text and not set(_ids(tokenizer, text)) & banned else None

    return _draw_uuids(n, max_tries, real_names, propose)


def name_pieces(tokenizer, name: str) -> tuple[int, ...]:
    """The sub-word token ids of ``name`` as it appears after a word in a prompt."""
    return tuple(_ids(tokenizer, name))


def pieces_by_position(tokenizer, donors: Sequence[str]) -> list[set[int]]:
    """For each token position, the set of tokens the ``donors`` names have there (encode once,
    then build many look-alikes with ``lookalike_of``)."""
    out: list[set[int]] = []
    for e in tokenizer([" " + d for d in donors], add_special_tokens=False)["input_ids"] if donors else []:
        out.extend(set() for _ in range(len(e) - len(out)))
        for k, i in enumerate(e):
            out[k].add(i)
    return out


def lookalike_pieces(target: Sequence, keep: Sequence[int], choices: Sequence[Sequence], rng: random.Random,
                     taken: set, name: Callable[[tuple], Hashable | None] = tuple, max_tries: int = 2000):
    """The one builder of "a name sharing ``target``'s pieces at positions ``keep``": ``target``'s
    piece at each kept position and, at every other position k, a draw from ``choices[k]``; no
    piece twice in one name. ``name`` turns the pieces into the name (None when they fail the
    caller's check, e.g. a tokenizer's re-encoding); the first name not in ``taken`` is added to it
    and returned, None after ``max_tries`` draws. Pieces are anything hashable: the synthetic
    world's name words (``hypotheses.localized.lookalikes``) or a tokenizer's ids (``lookalike_of``),
    drawn in the same order either way, so one seed gives one name."""
    def propose():
        pieces = tuple(target[k] if k in keep else rng.choice(choices[k]) for k in range(len(target)))
        return name(pieces) if len(set(pieces)) == len(pieces) else None

    got = _draw_distinct(1, max_tries, taken, propose)
    return got[0] if got else None


def lookalike_of(tokenizer, target: str, keep: Sequence[int], by_position: Sequence[set[int]], taken: set[str],
                 rng: random.Random, max_tries: int = 2000) -> str:
    """A new name with ``target``'s tokens at positions ``keep`` and, at every other position, a
    token that donor names have at that position (``by_position``, from ``pieces_by_position``)
    and ``target`` has nowhere: the localized experiment's share-k names, built from a real
    tokenizer's pieces. Re-encoded to check that every token is where it was put; never a name in
    ``taken`` (which it extends), never one token twice."""
    t = _ids(tokenizer, target)
    own = set(t)
    by_pos = [sorted(by_position[k] - own) if k < len(by_position) else [] for k in range(len(t))]
    anywhere = sorted(set().union(*by_position[1:]) - own) if len(by_position) > 1 else []
    # a position few donors reach (a long BPE name's tail) takes any donor's inner piece; the
    # re-encoding check below keeps only names whose tokens are exactly where they were put
    by_pos = [c if c or k == 0 else anywhere for k, c in enumerate(by_pos)]
    free = [k for k in range(len(t)) if k not in keep]
    if any(not by_pos[k] for k in free):
        raise FictitiousError(f"no donor name has a token at every position of {target!r} that {target!r} lacks; "
                              "supply more subjects.")
    def text_of(ids: tuple) -> str | None:
        text = _text(tokenizer, ids)
        return text if text and _ids(tokenizer, text) == list(ids) else None

    got = lookalike_pieces(t, keep, by_pos, rng, taken, text_of, max_tries)
    if got is not None:
        return got
    raise FictitiousError(f"no free look-alike of {target!r} keeping positions {list(keep)} was found; "
                          "supply more subjects.")
