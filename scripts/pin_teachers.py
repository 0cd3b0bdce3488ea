"""Commit each pinned base's format teacher beside it, so self-distillation uses the same teacher
weights on every machine (a teacher trained here from the pinned base is deterministic on this
machine but, like pre-training, moves with another CPU's float reduction order).

    python scripts/pin_teachers.py            # every pinned base, the default SFT recipe's teacher
    python scripts/pin_teachers.py --check    # only verify what is committed; exit 1 if a base lacks one

The teacher is the one ``Context.teacher`` builds (one epoch of SFT at the recipe of the default
``SFTSpec``, lr 3e-4 and batch 32, which every full-size synthetic design shares); its cache entry
``teachers/format-<key hash>/`` is sealed by ``teacher.json`` (weights sha256), and
``bases.install_pinned`` copies it into the cache with the base. A pinned base whose teacher is
already committed and verifies is left alone.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def teacher_entry(spec) -> tuple[Path, dict]:
    """Where the pinned base's default teacher lives (relative to the base directory) and its key."""
    from interference.bases import load_slick, pinned_dir, pinned_fingerprint
    from interference.io import config_hash
    from interference.sft_data import known_qa_facts
    from interference.teacher import TEACHER_DIR, teacher_key
    from interference.train import SFTSpec
    from interference.world import World
    import random
    d = pinned_dir(spec)
    facts = known_qa_facts(World(spec.world), load_slick(d), 400, random.Random("format-teacher"))
    key = teacher_key(pinned_fingerprint(spec), SFTSpec().teacher_recipe(), facts)
    return Path(TEACHER_DIR) / f"format-{config_hash(key)}", key


def pinned_specs() -> list:
    from interference.bases import BaseSpec, pinned_root
    out = []
    for d in sorted(pinned_root().glob("base-*")):
        cfg = json.loads((d / "config.json").read_text())
        cfg.pop("hash", None)
        out.append(BaseSpec.from_dict(cfg))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="verify only; train nothing")
    args = ap.parse_args(argv)
    from interference.bases import pinned_dir
    from interference.hypotheses.context import Context
    from interference.teacher import _check_entry
    from interference.train import SFTSpec
    missing = 0
    for spec in pinned_specs():
        src = pinned_dir(spec)
        rel, key = teacher_entry(spec)
        why = _check_entry(src / rel, key) if (src / rel / "teacher.json").exists() else "is missing"
        if not why:
            print(f"{src.name}: teacher {rel.name} committed and sealed")
            continue
        if args.check:
            print(f"{src.name}: teacher {rel.name} {why}")
            missing += 1
            continue
        ctx = Context(spec, out=Path("runs/pin_teachers"), progress=False)
        ctx.teacher(SFTSpec().teacher_recipe(), spec)  # trained (or found) in the cache beside the base
        built = ctx.base_dir(spec) / rel
        if _check_entry(built, key):
            print(f"{src.name}: the teacher built in {built} does not verify; nothing committed", file=sys.stderr)
            return 1
        shutil.rmtree(src / rel, ignore_errors=True)
        shutil.copytree(built, src / rel)
        print(f"{src.name}: committed teacher {rel.name}")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
