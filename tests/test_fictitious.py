"""Fictitious entities from a model's own tokenizer: look-alikes share real-name pieces, uuid
names share none, on a word-level and on a byte-level BPE tokenizer."""
import random
import pytest

from interference.fictitious import FictitiousError, lookalike_names, real_name_pieces, uuid_names

import real_fixtures as rf

REAL = [f"{rf.FIRST[i]} {rf.LAST[(3 * i) % 10]}" for i in range(10)]  # 10 of the 100 pairs are real


def _bpe():
    """A byte-level BPE (GPT-2's kind) trained in milliseconds on names and filler words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    words = REAL + ["where was born", "the capital city of", "mountain river forest desert", "blue green orange"]
    tk.train_from_iterator(words * 20, trainers.BpeTrainer(vocab_size=700, special_tokens=["<eos>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>")


@pytest.mark.parametrize("which", ["word", "bpe"])
def test_lookalikes_use_only_real_pieces_and_uuids_none(which):
    tok = rf.tokenizer() if which == "word" else _bpe()
    pieces = real_name_pieces(tok, REAL)
    look = lookalike_names(tok, REAL, 10, seed=1)
    assert len(set(look)) == 10 and not set(look) & set(REAL)
    assert all(real_name_pieces(tok, [x]) <= pieces for x in look)
    assert lookalike_names(tok, REAL, 10, seed=1) == look != lookalike_names(tok, REAL, 10, seed=2)
    uu = uuid_names(tok, REAL, 5, n_pieces=2, seed=0)
    assert len(set(uu)) == 5 and all(not real_name_pieces(tok, [x]) & pieces for x in uu)
    if which == "word":  # every piece is a whole word: "Ada Turing"-style recombinations
        assert all(len(x.split()) == 2 and x.split()[0] in rf.FIRST and x.split()[1] in rf.LAST for x in look)


def test_asking_for_more_than_exists_is_one_sentence():
    tok = rf.tokenizer()
    with pytest.raises(FictitiousError, match="only 1 distinct look-alike names"):
        lookalike_names(tok, ["Ada Lovelace", "Alan Turing", "Ada Turing"], 5)  # 2 x 2 combinations, 3 of them real
    with pytest.raises(FictitiousError, match="at least two real names"):
        lookalike_names(tok, ["Ada Lovelace"], 1)


@pytest.mark.parametrize("which", ["word", "bpe"])
@pytest.mark.parametrize("keep", [(), (0,), (0, 1)])
def test_lookalike_of_keeps_exactly_the_chosen_token_positions(which, keep):
    import random
    from interference.fictitious import lookalike_of, name_pieces, pieces_by_position
    tok = rf.tokenizer() if which == "word" else _bpe()
    targets = [n for n in REAL if len(name_pieces(tok, n)) >= 3] if which == "bpe" else \
        [f"{a} {b} {c}" for a, b, c in zip(rf.FIRST, rf.FIRST[1:], rf.LAST)]
    donors = [f"{a} {b}" for a in rf.FIRST for b in rf.LAST] if which == "bpe" else \
        targets + [f"{a} {b} {c}" for a, b, c in zip(rf.FIRST[2:], rf.FIRST, rf.LAST[3:])]
    assert targets
    by_pos = pieces_by_position(tok, donors)
    taken = set(donors)
    built = 0
    for t in targets:
        try:  # BPE merges can make a position unfillable for a name; that name is refused, not faked
            new = lookalike_of(tok, t, keep, by_pos, taken, random.Random(0))
        except FictitiousError:
            continue
        built += 1
        a, b = name_pieces(tok, new), name_pieces(tok, t)
        assert len(a) == len(b) and new not in donors
        assert [k for k in range(len(b)) if a[k] == b[k]] == list(keep)  # kept in place, nothing else shared
        assert not set(a[k] for k in range(len(a)) if k not in keep) & set(b)
        assert all(a[k] in by_pos[k] for k in range(len(a)))  # every other token is a donor's, at its position
    assert built >= 2


def test_lookalike_pieces_keeps_positions_never_repeats_and_gives_up_cleanly():
    from interference.fictitious import lookalike_pieces
    rng, taken = random.Random(3), {("a", "x", "c")}
    got = [lookalike_pieces(("a", "b", "c"), (0, 2), [["a"], ["x", "y", "a"], ["c"]], rng, taken) for _ in range(2)]
    assert got[0] == ("a", "y", "c") and got[0] in taken  # ("a","x","c") is taken, ("a","a","c") repeats a piece
    assert got[1] is None  # no other name can be built: the builder stops after max_tries draws
    assert lookalike_pieces(("a", "b"), (0,), [["a"], ["q"]], rng, set(), name=lambda p: None, max_tries=5) is None
