"""One page about one fact, drawn from a ``FactReport`` (``interference.report``)."""
from __future__ import annotations

from pathlib import Path

import interference.figures.style as style
from interference.figures.style import color, note


def plot_fact_report(rep, out: str | Path | None = None, stem: str | None = None):
    """(a) gold log-prob over training per method (open markers: answered wrong), (b) logit lens:
    gold log-prob read off each layer, (c) drift per layer, (d) nearest new facts of the same
    relation, red where a method now answers their value. Returns the figure (and saves it with
    ``out``)."""
    from interference.evaluate import normalize_answer
    fig, ax = style.figure(4, width=3.5, height=3.1)
    for i, (m, rows) in enumerate(rep.timeline.items()):
        c = color(m, i)
        steps, lp = [r["step"] for r in rows], [r["gold_logprob"] for r in rows]
        ax[0, 0].plot(steps, lp, "-", color=c, label=m)
        ax[0, 0].scatter(steps, lp, color=[c if r["correct"] else "white" for r in rows], edgecolors=c, s=18, zorder=3)
    ax[0, 0].set(xlabel="optimizer steps", ylabel="log p(gold answer)", title="(a) answer over training")
    ax[0, 0].legend()
    for i, (m, rows) in enumerate(rep.lens.items()):
        ax[0, 1].plot([r["layer"] for r in rows], [r["gold_logprob"] for r in rows], "o-",
                      color="k" if m == "base" else color(m, i), label=m)
    ax[0, 1].set(xlabel="layer (residual stream after it)", ylabel="log p(gold) via final norm + unembed",
                 title="(b) logit lens")
    ax[0, 1].legend()
    for i, (m, d) in enumerate(rep.drift.items()):
        ax[0, 2].plot(range(len(d)), d, "o-", color=color(m, i), label=m)
    ax[0, 2].set(xlabel="layer", ylabel="drift: 1 - cos(h_tuned, h_base)", title="(c) subject state drift")
    n_layers = len(next(iter(rep.drift.values()), []))
    for a in (ax[0, 1], ax[0, 2]):
        a.set_xticks(range(n_layers))
    ax[0, 2].legend()
    if rep.neighbours:
        wrong = {normalize_answer(f["prediction"]) for f in rep.final.values() if not f["correct"]}
        nb = rep.neighbours[::-1]
        ax[0, 3].barh(range(len(nb)), [n["cosine"] for n in nb],
                      color=["#CC3311" if normalize_answer(n["answer"]) in wrong else "#999999" for n in nb])
        ax[0, 3].set_yticks(range(len(nb)))
        ax[0, 3].set_yticklabels([f"{n['subject']} -> {n['answer']}" for n in nb], fontsize=7)
        ax[0, 3].set(xlabel=f"cosine in the base, layer {rep.layer}", title="(d) nearest new facts (red: answered now)")
    else:
        note(ax[0, 3], "no new fact shares this relation")
    f = rep.fact
    fig.suptitle(f"{f.fact_id}: {f.prompt} -> {f.answer}   (SliCK {(rep.slick or {}).get('category', 'n/a')})")
    if out is not None:
        style.save(fig, out, stem or f"fact_{f.fact_id.replace(':', '_')}")
    return fig
