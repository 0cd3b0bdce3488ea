"""Writes notebooks/fact_explorer.ipynb (kept as code so the notebook is reviewed like code).

The notebook is a thin layer: every number comes from ``interference.report.fact_report`` and
every picture from ``interference.figures.plot_fact``; run this script after changing a cell.
"""
from pathlib import Path

from _cells import write_notebook  # this folder's shared writer (the script's folder is on sys.path)

cells = [
    ("md", """# Fact explorer: what happened to *this* fact?

Pick a fact by entity name or fact id and see, under each fine-tuning method:
its answer over training, its SliCK category in the base model, the new facts nearest to it in
representation space (and whether its wrong answer is one of their values), how far its hidden
state drifted per layer, which parameter group's revert alone restores it, a logit-lens view of
its answer across layers, and the forecast's risk for it next to what happened (hit, miss, false alarm).

The runs are those of `python -m interference.figures` (same configs, same cache); missing ones
are trained once. `QUICK = True` uses the tiny world (seconds); `False` the default world."""),
    ("code", """import os
import matplotlib.pyplot as plt
from interference.figures.explore import explorer_runs
from interference.report import fact_report, forgotten_facts
from interference.figures.plot_fact import plot_fact_report

QUICK = os.environ.get("FACT_EXPLORER_QUICK", "1") == "1"
RUNS = os.environ.get("FACT_EXPLORER_RUNS")  # default: runs/figures_quick or runs/figures
runs = explorer_runs(QUICK, RUNS, labels=("sft", "self_distill"))
{m: round(r.metrics["stability_accuracy"]["final"], 3) for m, r in runs.items()}"""),
    ("md", "## 1. Pick a fact\nBy default: the first held-out known fact that plain SFT broke. Set `FACT` to an entity name or a fact id."),
    ("code", """broken = forgotten_facts(runs["sft"])
print(f"{len(broken)} held-out known facts are wrong after SFT, e.g. {broken[:5]}")
FACT = os.environ.get("FACT") or (broken[0] if broken else runs["sft"].world_and_data()[1].eval_sets["stability"][0].fact_id)
rep = fact_report(FACT, runs, forecast_dir=os.environ.get("FORECAST_DIR"))  # None: forecast computed from the SFT set
print(rep.summary())"""),
    ("md", "## 2. Everything at once\n(a) gold log-prob over training (open markers: wrong), (b) logit lens, (c) drift per layer, (d) nearest new facts."),
    ("code", """fig = plot_fact_report(rep)
plt.show()"""),
    ("md", "## 3. The details"),
    ("code", """print("nearest new facts (same relation), base model, layer", rep.layer)
for n in rep.neighbours:
    print(f"  {n['cosine']:.3f}  {n['subject']:>16} -> {n['answer']}")
print("wrong answer taken from a neighbour:", rep.wrong_from_neighbour)
print("units whose revert alone restores it:", rep.restores or "(not forgotten by any method)")
print("logit lens under SFT:", [(r['layer'], r['top'], round(r['gold_logprob'], 2)) for r in rep.lens['sft']])"""),
    ("md", """## 4. The forecast next to what happened
Before any training, `interference.forecast` scores every watched fact's risk of being forgotten
from the base model and the SFT set alone. Here is its call on this fact (at risk = top decile of
the watched facts) beside what the SFT run did, and the run's own forgetting rate, the rate a
forecast has to beat."""),
    ("code", """chk = rep.forecast_check
print("forecast vs outcome:", chk.get("text") or chk.get("missing"))
if "risk" in chk:
    print(f"  risk {chk['risk']:.3f}, percentile {chk['percentile']}, at risk: {chk['at_risk']}, "
          f"forgotten: {chk['forgotten']} -> {chk['outcome']}")"""),
    ("md", "## 5. The same entity by name\nA name finds the entity's first held-out fact (pass `relation=` for another)."),
    ("code", """by_name = fact_report(rep.fact.subject, runs, relation=rep.fact.relation, revert=False)
print(by_name.fact.fact_id == rep.fact.fact_id, by_name.fact)"""),
]
write_notebook(cells, Path(__file__).with_name("fact_explorer.ipynb"))
