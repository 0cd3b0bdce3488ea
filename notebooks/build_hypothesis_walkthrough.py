"""Writes notebooks/hypothesis_walkthrough.ipynb (kept as code so the notebook is reviewed like code).

A walk through one hypothesis from its saved results (verdict.json, per_seed.json, its plots);
all reading and drawing is done by ``interference.figures.inputs`` and ``plot_results``.
"""
from pathlib import Path

from _cells import write_notebook  # this folder's shared writer (the script's folder is on sys.path)

cells = [
    ("md", """# One hypothesis, from its saved results

`python -m interference.run_hypothesis NAME` writes `verdict.json` (the pre-registered endpoint,
the verdict and every statistic with its 95% CI over seeds), `per_seed.json` and its plots. This
notebook reads them back: what was predicted, what came out, how much the seeds agree, and the
figures. If the results are missing it runs the hypothesis CLI once (quick world: minutes)."""),
    ("code", """import os
import matplotlib.pyplot as plt
from IPython.display import Image, display
from interference.figures import inputs
from interference.figures.config import REPO
from interference.figures.plot_results import plot_hypotheses

QUICK = os.environ.get("HYP_QUICK", "1") == "1"
NAME = os.environ.get("HYP_NAME", "localized")
HYP_DIR = os.environ.get("HYP_DIR", str(REPO / ("runs/hypotheses_quick" if QUICK else "runs/hypotheses")))
res = inputs.load_hypothesis(NAME, HYP_DIR, quick=QUICK, run_if_missing=True, seeds=2 if QUICK else None)
v = res["verdict"]"""),
    ("md", "## 1. What was decided before running, and what came out"),
    ("code", "print(inputs.describe_verdict(v))"),
    ("md", "## 2. Seed by seed\nThe endpoint is a mean over seeds; here is each seed's value of every per-seed number."),
    ("code", """rows = res["per_seed"] if isinstance(res["per_seed"], list) else list(res["per_seed"].values())
keys = sorted({k for r in rows for k, x in r.items() if isinstance(x, (int, float))})[:8]
print("seed  " + "  ".join(f"{k[:14]:>14}" for k in keys))
for i, r in enumerate(rows):
    print(f"{r.get('seed', i):>4}  " + "  ".join(f"{r.get(k, float('nan')):>14.3f}" for k in keys))"""),
    ("md", "## 3. The endpoint with its interval, and the hypothesis' own figures"),
    ("code", """import tempfile
summary = inputs.hypotheses_summary(HYP_DIR, [NAME], quick=QUICK)
png, _ = plot_hypotheses(summary, tempfile.mkdtemp(), stem=f"walkthrough_{NAME}")
display(Image(filename=str(png)))
for p in res["plots"]:
    display(Image(filename=p))
print(len(res["plots"]), "saved plot(s)")"""),
]
write_notebook(cells, Path(__file__).with_name("hypothesis_walkthrough.ipynb"))
