"""Train a tiny Llama that *knows* entity-specific facts, for tests of the real-model path.

    python scripts/make_knowing_fixture.py --out tests/fixtures/knowing      # ~8-12 min on 2 cores

Why: a random model (or one taught each relation's majority answer) knows nothing entity-specific,
so SliCK, forgetting and the hypothesis runners never meet real knowledge in tests. This builds
the smallest thing that does, with the features that broke the real path before:

- a byte-level BPE tokenizer trained here with ``tokenizers`` (1200 pieces), so subject
  names are several sub-word pieces and answers several tokens;
- an EntityQuestions-style world (``P*.train.json`` as a JSON list, ``P*.test.json`` as JSONL,
  records ``{"question", "answers"}``): four relations, one question template each, values that
  never repeat across relations; ``P17`` lists two aliases per answer and the model is taught one of
  them (chosen per fact), so scoring must match any alias;
- the model is trained on the *train* files only (each fact in few-shot form, 0-4 exemplars of its
  relation, one ``Q: ... A: ...`` per line, as SliCK asks them), until it answers nearly all of them
  greedily; the *test* files' subjects are never seen, so their facts are Unknown.

Writes ``OUT/model`` (save_pretrained: config, safetensors in float16 to keep the files small,
tokenizer.json) and ``OUT/data`` (the EQ files), plus ``OUT/fixture.json`` (settings, accuracy,
seconds). Deterministic for a seed on one machine; tests read what is committed, never retrain.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path



def _syllables(n: int = 220) -> list[str]:
    """``n`` distinct consonant-vowel(-consonant) syllables, always the same ones.

    Why so many: the localized design aims its dose at a target through name pieces *specific* to
    it (held by at most 2% of subject names, ``real_world.RARE_PIECE``). The first fixture drew
    names from 28 syllables, so every BPE piece sat in 25-60 of its 520 names and only 14 watched
    facts could be targets (the localized verdict read 14 targets, inconclusive). With 220 the
    tokenizer's pieces are held by a handful of names each."""
    rng = random.Random("fixture-syllables")
    cons, vowels = "bcdfghklmnprstvz", "aeiou"
    out: set[str] = set()
    while len(out) < n:
        out.add(rng.choice(cons) + rng.choice(vowels) + rng.choice(cons + "  ").strip())
    return sorted(out)


SYLLABLES = _syllables()
# value words: disjoint from each other across relations, several BPE pieces each
RELATIONS = {
    "P19": ("Where was {} born?", ["Port Vellmora", "Drenholt", "Saltmere", "Ovinbridge", "Carrow Hythe",
                                    "Lindqvar", "Mossgate", "Tarnwick", "Ebbersly", "Quillon Bay", "Harrowfen",
                                    "Stonereach"]),
    "P106": ("What kind of work does {} do?", ["glass weaver", "salt miner", "lamp tender", "map binder",
                                                "bell caster", "reed cutter", "ink maker", "sail mender",
                                                "clock smith", "rope walker", "wax chandler", "peat digger"]),
    "P17": ("Which country is {} located in?", [("Kelvaria", "Republic of Kelvaria"), ("Ostrand", "Ostrand Union"),
                                                 ("Mirevale", "Kingdom of Mirevale"), ("Tessaly", "Tessaly Isles"),
                                                 ("Vornheim", "Vornheim Federation"), ("Caldros", "Free Caldros"),
                                                 ("Ulmark", "Ulmark Realm"), ("Serapine", "Serapine Coast"),
                                                 ("Brevonia", "United Brevonia"), ("Dunmoor", "Dunmoor March")]),
    "P264": ("What music label is {} represented by?", ["Owlfeather Records", "Copper Moth", "Greyline Sound",
                                                         "Blue Cinder", "Halcyon Vault", "Nettle House",
                                                         "Quietwater Music", "Red Lantern", "Ferro Disc",
                                                         "Lowtide Audio"]),
}


def make_world(n_train: int, n_test: int, seed: int) -> dict:
    """relation -> {"train": [(subject, aliases, taught alias)], "test": [...]}; every subject is new."""
    rng = random.Random(seed)
    used: set[str] = set()

    def name() -> str:
        while True:
            parts = [rng.choice(SYLLABLES) + rng.choice(SYLLABLES) for _ in range(2)]
            if rng.random() < 0.4:
                parts[1] += rng.choice(SYLLABLES)
            n = " ".join(p.capitalize() for p in parts)
            if n not in used:
                used.add(n)
                return n

    world = {}
    for rel, (_, values) in RELATIONS.items():
        rows = {}
        for split, n in (("train", n_train), ("test", n_test)):
            out = []
            for _ in range(n):
                v = rng.choice(values)
                aliases = list(v) if isinstance(v, tuple) else [v]
                taught = rng.choice(aliases)
                rng.shuffle(aliases)  # the taught alias is not always listed first
                out.append((name(), aliases, taught))
            rows[split] = out
        world[rel] = rows
    return world


def write_data(world: dict, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for rel, rows in world.items():
        tpl = RELATIONS[rel][0]
        train = [{"question": tpl.format(s), "answers": a} for s, a, _ in rows["train"]]
        (d / f"{rel}.train.json").write_text(json.dumps(train, indent=0))
        (d / f"{rel}.test.json").write_text("".join(json.dumps({"question": tpl.format(s), "answers": a}) + "\n"
                                                    for s, a, _ in rows["test"]))


def qa(rel: str, subject: str, answer: str) -> str:
    return f"Q: {RELATIONS[rel][0].format(subject)} A: {answer}\n"


def train_tokenizer(world: dict, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    text = [qa(rel, s, t) for rel, rows in world.items() for split in rows.values() for s, _, t in split]
    text += [" ".join(a) for rows in world.values() for split in rows.values() for _, a, _ in split]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(text, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>"],
                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>",
                                   clean_up_tokenization_spaces=False)


def sequences(world: dict, rng: random.Random, n: int, max_shots: int = 3) -> list[str]:
    """``n`` training texts: a trained fact after 0-``max_shots`` exemplars of its relation."""
    rels = list(world)
    out = []
    for _ in range(n):
        rel = rng.choice(rels)
        rows = world[rel]["train"]
        picks = rng.sample(rows, rng.randint(1, max_shots + 1))
        out.append("".join(qa(rel, s, t) for s, _, t in picks))
    return out


def greedy_accuracy(model, tok, world: dict, split: str, rng: random.Random, n_shots: int, limit: int) -> float:
    """Share of ``split`` facts whose greedy answer (to the newline) is the taught alias (train) or any alias."""
    import torch
    hits = total = 0
    nl = tok("\n", add_special_tokens=False)["input_ids"]
    for rel, rows in world.items():
        for s, aliases, taught in rows[split][:limit]:
            shots = [r for r in rng.sample(world[rel]["train"], n_shots + 1) if r[0] != s][:n_shots]
            prompt = "".join(qa(rel, a, t) for a, _, t in shots) + f"Q: {RELATIONS[rel][0].format(s)} A:"
            ids = torch.tensor([tok(prompt)["input_ids"]])
            with torch.no_grad():
                out = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=nl[-1],
                                     pad_token_id=tok.pad_token_id)
            ans = tok.decode(out[0, ids.shape[1]:]).split("\n")[0].strip()
            hits += ans in aliases
            total += 1
    return hits / total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-train", type=int, default=120, help="trained subjects per relation")
    ap.add_argument("--n-test", type=int, default=40, help="never-seen subjects per relation")
    ap.add_argument("--vocab", type=int, default=1200)
    ap.add_argument("--d-model", type=int, default=96)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2400, help="at most this many steps (stops once learned)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--target", type=float, default=1.0, help="stop once this share of trained facts is answered")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    import transformers as t
    t0 = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # reproducible, and polite on a shared machine
    out = Path(args.out)
    world = make_world(args.n_train, args.n_test, args.seed)
    tok = train_tokenizer(world, args.vocab)
    cfg = t.LlamaConfig(vocab_size=len(tok), hidden_size=args.d_model, intermediate_size=args.d_model * 8 // 3,
                        num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4,
                        max_position_embeddings=256, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                        bos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    model = t.LlamaForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    # warm up, then decay linearly to a tenth: the last few hundred steps settle the rare facts
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / 100, 1.0 - 0.9 * min(1.0, s / args.steps)))
    rng = random.Random(args.seed + 1)
    acc, step = 0.0, 0
    for step in range(1, args.steps + 1):
        batch = tok(sequences(world, rng, 32), return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model.train()
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 and step >= args.steps // 2:
            model.eval()
            acc = greedy_accuracy(model, tok, world, "train", random.Random(step), 4, limit=15)
            print(f"step {step}  loss {loss.item():.3f}  4-shot accuracy on 60 trained facts {acc:.3f}  "
                  f"{time.time() - t0:.0f}s", flush=True)
            if acc >= args.target:
                break
    model.eval()
    full = greedy_accuracy(model, tok, world, "train", random.Random(7), 4, limit=args.n_train)
    unseen = greedy_accuracy(model, tok, world, "test", random.Random(7), 4, limit=args.n_test)
    (out / "model").mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    write_data(world, out / "data")
    info = {"settings": vars(args), "steps": step, "trained_accuracy_4shot": round(full, 4),
            "unseen_accuracy_4shot": round(unseen, 4), "parameters": sum(p.numel() for p in model.parameters()),
            "vocab": len(tok), "seconds": round(time.time() - t0, 1)}
    (out / "fixture.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
