"""What makes the QA format reach statement-only facts? Ablate the pre-training recipe.

Pre-trains the base on variants of the default recipe (fewer statement paraphrases, more QA
weight, shorter training) and records ``known_qa_accuracy`` for each, so the README's "what
mattered" is measured, not remembered.

    python analyses/pretrain_ablation.py            # quick world (~2 min on 2 cores)
    python analyses/pretrain_ablation.py --default  # default world (~5 min per variant)

Writes analyses/results/pretrain_ablation.json and .md.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from interference.io import atomic_write_json, atomic_write_text
from interference.bases import BaseSpec, base_dir
from interference.pretrain import pretrain

VARIANTS = {
    "recipe (4 paraphrases, QA for half)": {},
    "1 statement paraphrase": {"world": {"n_statement_templates": 1}},
    "2 statement paraphrases": {"world": {"n_statement_templates": 2}},
    "1 QA template": {"world": {"n_qa_templates": 1}},
    "half the consolidation": {"pretrain": "half"},
}


def variant_spec(spec: BaseSpec, change: dict) -> BaseSpec:
    world = dataclasses.replace(spec.world, **change.get("world", {}))
    p = spec.pretrain
    if change.get("pretrain") == "half":
        p = dataclasses.replace(p, steps=p.steps // 2, warmup=p.warmup // 2) if p.consolidation is None else \
            dataclasses.replace(p, consolidation=p.consolidation / 2)
    return dataclasses.replace(spec, world=world, pretrain=p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--default", action="store_true", help="ablate on the default world instead of the quick one")
    ap.add_argument("--out", default="analyses/results")
    args = ap.parse_args(argv)
    spec = BaseSpec.default(quick=not args.default)
    rows = []
    for name, change in VARIANTS.items():
        s = variant_spec(spec, change)
        m = pretrain(s, base_dir(s), progress=False)
        rows.append({"variant": name, "known_qa_accuracy": m["known_qa_accuracy"],
                     "unseen_qa_accuracy": m["unseen_qa_accuracy"], "pretrain_qa_accuracy": m["pretrain_qa_accuracy"],
                     "steps": m["steps"], "train_seconds": m.get("train_seconds")})
        print(f"{name:38s} known QA {m['known_qa_accuracy']:.3f}  unseen {m['unseen_qa_accuracy']:.3f}")
    out = Path(args.out)
    world = "default" if args.default else "quick"
    atomic_write_json(out / f"pretrain_ablation_{world}.json", rows)
    md = ["| recipe | known QA | unseen QA | trained-QA |", "|---|---|---|---|"]
    md += [f"| {r['variant']} | {r['known_qa_accuracy']:.3f} | {r['unseen_qa_accuracy']:.3f} | "
           f"{r['pretrain_qa_accuracy']:.3f} |" for r in rows]
    atomic_write_text(out / f"pretrain_ablation_{world}.md", "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
