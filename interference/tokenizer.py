"""A word-level ``transformers`` fast tokenizer for the synthetic world.

Why a real ``PreTrainedTokenizerFast``: evaluation, training and probes then call the same
tokenizer API they call on a Hugging Face model loaded from disk, so there is one code path.
Word level (each name piece, template word and value is one token) keeps prompts ~13 tokens and
makes "names share tokens" literal.
"""
from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import PreTrainedTokenizerFast

SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>"}


def build_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS.values())}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS["unk_token"]))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(tokenizer_object=tk, clean_up_tokenization_spaces=False, **SPECIALS)


def world_tokenizer(world) -> PreTrainedTokenizerFast:
    return build_tokenizer(world.vocabulary())


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(path))


LINE_END = "\n"  # one QA pair per line: what ends an answer in the few-shot format SliCK asks in


def ends_lines(tokenizer) -> bool:
    """Whether the tokenizer can encode a line end (BPE ones can; the synthetic world's
    word-level tokenizer drops whitespace, so its answers end where the next question begins)."""
    v = getattr(tokenizer, "_interference_ends_lines", None)
    if v is None:
        v = bool(tokenizer(LINE_END, add_special_tokens=False)["input_ids"])
        try:
            setattr(tokenizer, "_interference_ends_lines", v)
        except AttributeError:
            pass
    return v


def encode_qa(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the answer as it continues the prompt.

    The answer ids are taken as the suffix of ``prompt + " " + answer`` so that BPE tokenizers
    that merge the leading space into the answer token are handled exactly. Where the tokenizer
    can encode a line end, the answer ends with one (``LINE_END``), as every line of the few-shot
    format does: training then teaches where an answer stops, and a reader that decodes to the
    newline reads "unknown" as "unknown", not as "unknownownown...". The word-level synthetic
    tokenizer has no line end, so its ids are unchanged.
    """
    end = LINE_END if ends_lines(tokenizer) else ""
    p = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    full = tokenizer(prompt + " " + answer + end, add_special_tokens=True)["input_ids"]
    a = full[len(p):] if full[: len(p)] == p else tokenizer(" " + answer + end, add_special_tokens=False)["input_ids"]
    if not a:  # e.g. a tokenizer whose vocabulary lacks the answer entirely
        raise ValueError(f"answer {answer!r} encodes to no tokens after prompt {prompt!r}; check the tokenizer.")
    return p, a
