"""The pre-training command line, built without torch.

Why its own module: ``interference.pretrain`` is also the library the other commands import
(torch, the model, the loop), and a ``--help`` that waits for all of that took 4-16 s. Its
``__main__`` path parses with this parser first, so ``--help`` and a bad flag answer before the
heavy imports; a good command line then runs ``interference.pretrain.main``.
"""
from __future__ import annotations

from interference.cli import Parser, add_common, add_resume, add_seed, out_dir

# interference.pretrain.consolidation_help() computes this from the default specs (torch-side);
# tests/test_cli.py checks the two agree, so the fast help cannot drift from the real default.
CONSOLIDATION_HELP = "steps after memorisation, as a multiple of the memorisation step (default 1)"


def build_parser() -> Parser:
    ap = Parser(prog="python -m interference.pretrain",
                description="Pre-train the base model on the synthetic world (cached by config hash).")
    ap.add_argument("--out", type=out_dir, help="run directory (default: the cache, keyed by config hash)")
    ap.add_argument("--quick", action="store_true", help="tiny world and model (seconds)")
    ap.add_argument("--world", help="world config JSON (as written by WorldConfig.save)")
    ap.add_argument("--steps", type=int, help="train a fixed number of steps instead of to the consolidation criterion")
    ap.add_argument("--consolidation", type=float, help=CONSOLIDATION_HELP)
    ap.add_argument("--width", type=int, help="d_model of the base (MLP 4x; default: the spec's, 128)")
    ap.add_argument("--recreate", action="store_true",
                    help="train a base the repository pins (interference/pinned) here instead of installing the "
                         "committed copy, and report whether this machine reproduces its weights")
    ap.add_argument("--pin", action="store_true",
                    help="after training, commit the base into interference/pinned (a maintainer's step; then "
                         "`python scripts/pin_teachers.py` commits its format teacher)")
    add_seed(ap, "model init and data order (default: the spec's, 0)", default=None)
    add_common(ap)
    add_resume(ap)
    return ap
