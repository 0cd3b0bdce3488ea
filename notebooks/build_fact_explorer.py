"""Writes notebooks/fact_explorer.ipynb (kept as code so the notebook is reviewed like code)."""
import nbformat as nbf
from pathlib import Path

cells = [
    ("md", """# Fact explorer: why did *this* known fact break?

Pick one previously known fact, and see
1. its timeline under plain SFT and under self-distillation (gold log-prob and answer per evaluation),
2. the new facts nearest to it in representation space (base model, subject's last token),
3. which parameter group's update broke it (revert one group at a time).

`QUICK = True` uses the tiny world (seconds); set it to `False` for the default world
(pre-trains once, ~5 min on 2 cores, then cached)."""),
    ("code", """import os
QUICK = os.environ.get("FACT_EXPLORER_QUICK", "1") == "1"
import dataclasses, matplotlib.pyplot as plt
from interference.pretrain import BaseSpec, base_model
from interference.train import FinetuneConfig, finetune
from interference.sft_data import SFTDataConfig
from interference.probes import capture
from interference.metrics.forgetting import forgetting_events
from interference.metrics.attribution import revert_attribution
from interference.metrics.overlap import overlap_with_new
OUT = os.environ.get("FACT_EXPLORER_OUT", "runs/fact_explorer")
spec = BaseSpec.default(quick=QUICK)
base, tok, world, base_dir = base_model(spec, progress=False)
cfg = FinetuneConfig.quick(data=SFTDataConfig.quick(unknown_fraction=1.0), epochs=15) if QUICK else FinetuneConfig(data=SFTDataConfig(unknown_fraction=1.0))
runs = {m: finetune(dataclasses.replace(cfg, method=m), f"{OUT}/{m}", progress=False) for m in ("sft", "self_distill")}
{m: {k: v for k, v in r.metrics.items() if k.endswith("accuracy") or k.endswith("accuracy_base")} for m, r in runs.items()}"""),
    ("md", "## 1. Pick a known fact that SFT broke"),
    ("code", """events = {m: forgetting_events(r.timeline(), "stability") for m, r in runs.items()}
broken = [f for f, e in events["sft"].items() if e.forgotten]
print(f"{len(broken)} of {len(events['sft'])} held-out known facts are wrong after SFT; "
      f"{sum(events['self_distill'][f].forgotten for f in broken)} of those also after self-distillation")
world_, data = runs["sft"].world_and_data()
facts = {f.fact_id: f for f in data.eval_sets["stability"]}
fact = facts[broken[0]] if broken else next(iter(facts.values()))
print(fact.prompt, "->", fact.answer, "| SFT now says:", events["sft"][fact.fact_id].final_prediction)"""),
    ("code", """fig, ax = plt.subplots(figsize=(6, 3))
for m, r in runs.items():
    rows = [x for x in r.timeline() if x["fact_id"] == fact.fact_id and x["set"] == "stability"]
    ax.plot([x["step"] for x in rows], [x["gold_logprob"] for x in rows], marker="o", label=m)
ax.set(xlabel="step", ylabel="log p(gold answer)", title=f"{fact.subject} / {fact.relation}")
ax.legend(); plt.show()"""),
    ("md", "## 2. Its nearest new facts of the same relation in representation space (base model)"),
    ("code", """layer = base.cfg.n_layers // 2
hook = f"blocks.{layer}.hook_resid_post"
new_facts = [f for f in data.train if f.fact_id in set(data.unknown_ids)]
watch = data.eval_sets["stability"]  # overlap is centred on these facts' mean, as the localized runner does
h_watch = capture(base, tok, watch, [hook], "subject_last")[hook]
h_new = capture(base, tok, new_facts, [hook], "subject_last")[hook]
ov = overlap_with_new(h_watch, [f.relation for f in watch], h_new, [f.relation for f in new_facts], k=5)
i = [f.fact_id for f in watch].index(fact.fact_id)
print(f"overlap {ov.max[0, i]:.3f} (centred max cosine to a new fact of the same relation); nearest first:")
for j in ov.neighbours[0, i]:
    if j >= 0:
        f = new_facts[j]
        print(f"{f.subject:>14} {f.relation:>9} -> {f.answer}")"""),
    ("md", "## 3. Which parameter group's update broke it?"),
    ("code", """tuned, _, _ = runs["sft"].load_model()
att = revert_attribution(tuned, base, tok, [fact], by_layer=True)
fixes = [u for u, ids in att.recovered.items() if fact.fact_id in ids]
print("reverting any one of these units restores the fact:", fixes or "none (the damage is spread out)")"""),
]
nb = nbf.v4.new_notebook()
nb.cells = [nbf.v4.new_markdown_cell(s) if k == "md" else nbf.v4.new_code_cell(s) for k, s in cells]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, Path(__file__).with_name("fact_explorer.ipynb"))
