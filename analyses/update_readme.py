"""Fill the README's generated sections from saved results (never typed by hand).

Each section sits between ``<!-- NAME -->`` and ``<!-- /NAME -->`` in README.md (and
docs/REAL_MODELS.md) and is replaced by ``analyses/results/NAME.md``; the ``PRETRAIN-RESULTS``
section is rendered here from the cached default base model's metrics.json, the benchmark and
command-time tables from ``benchmarks/results/``, ``REAL-FIXTURE-RESULTS`` (docs/REAL_MODELS.md)
from ``analyses/results/real_fixture/``.

    python analyses/update_readme.py
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from interference.io import atomic_write_text, number
from interference.bases import BaseSpec, base_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "analyses" / "results"


def _acc(x) -> str:
    """An accuracy from metrics.json; an empty split's (null) is shown as missing, not as a number."""
    v = number(x)
    return f"{v:.3f}" if math.isfinite(v) else "n/a"


def pretrain_section() -> str | None:
    """From the committed (pinned) default base, so the README describes the weights every machine
    uses; the cache's copy when the default is not pinned."""
    from interference.bases import pinned_dir, base_fingerprint
    spec = BaseSpec.default()
    d = pinned_dir(spec) or base_dir(spec)
    path = d / "metrics.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    pinned = pinned_dir(spec) is not None
    s = m["slick"]
    rows = [f"Default world ({spec.world.n_pretrain_qa} QA-trained + {spec.world.n_statement_only} statement-only + "
            f"{spec.world.n_unseen} unseen entities, {len(spec.world.relations)} relations x {spec.world.n_values} values), "
            f"model {spec.model.n_layers} layers x d{spec.model.d_model} ({m.get('n_params', 0) / 1e6:.2f}M parameters), "
            f"{m['steps']} steps (config hash `{spec.hash()}`, weights `{base_fingerprint(d)}`"
            + (", committed in `interference/pinned`" if pinned else "") + "):", "",
            "| split | QA accuracy | HighlyKnown | MaybeKnown | WeaklyKnown | Unknown |", "|---|---|---|---|---|---|"]
    for split, key in (("pretrain_qa", "pretrain_qa_accuracy"), ("statement_only", "known_qa_accuracy"),
                       ("unseen", "unseen_qa_accuracy")):
        c = s[split]
        rows.append(f"| {split} | {_acc(m.get(key))} | {c['HighlyKnown']} | {c['MaybeKnown']} | {c['WeaklyKnown']} | {c['Unknown']} |")
    rows.append(f"\nChance is {m['chance']:.3f}.")
    rows += ["", "Every base the repository pins (`interference/pinned`), the same pre-training steps per world at each "
             "consolidation level (steps after the memorisation phase, as a multiple of it):", "",
             "| spec | world | width | consolidation | weights | steps | statements memorised at the end of the memorisation phase | known QA |",
             "|---|---|---|---|---|---|---|---|"]
    from interference.bases import pinned_root
    from interference.world import WorldConfig
    def order(d):
        cfg = json.loads((d / "config.json").read_text())
        return cfg["model"]["d_model"], cfg["pretrain"].get("consolidation") or 0
    for d in sorted(pinned_root().glob("base-*"), key=order):
        cfg, pm = json.loads((d / "config.json").read_text()), json.loads((d / "metrics.json").read_text())
        c = pm.get("consolidation", {})
        world = "default" if WorldConfig.from_dict(cfg["world"]) == spec.world else f"seed {cfg['world'].get('seed')}, {cfg['world'].get('n_statement_only')} statement-only"
        rows.append(f"| `{d.name[5:]}` | {world} | d{cfg['model']['d_model']} | {cfg['pretrain'].get('consolidation'):g}x | "
                    f"`{base_fingerprint(d)}` | {pm.get('steps')} | "
                    f"{'yes' if c.get('memorised') else 'no'} (step {c.get('memorised_step')}) | {_acc(pm.get('known_qa_accuracy'))} |")
    return "\n".join(rows)


def benchmarks_section() -> str | None:
    d = ROOT / "benchmarks" / "results"
    rows = []
    if (d / "pretrain.json").exists():
        b = json.loads((d / "pretrain.json").read_text())
        rows.append(f"| pre-train default base (goal < 600 s, known QA >= 0.8) | {b['total_seconds']:.0f} s, "
                    f"known QA {b['known_qa_accuracy']:.3f} | {b.get('torch_threads')} threads, {b.get('cpu_count')} cores; "
                    f"the fixed {b.get('steps')}-step recipe (before the consolidation criterion) |")
    if (d / "probes.json").exists():
        b = json.loads((d / "probes.json").read_text())
        within = b.get("hooked_over_plain_within_run")
        rows.append(f"| fine-tuning with probes / without (goal <= 1.15) | {b['hooked_over_plain']:.2f} side by side"
                    + (f", {within:.2f} within one run" if isinstance(within, (int, float)) else "")
                    + f" | probes every {b.get('probe_every')} steps |")
        rows.append(f"| overlap of 10k x 10k facts, all layers (goal < 5 s) | {b['overlap_10k_seconds']:.2f} s | "
                    f"{b.get('threads')} thread(s) |")
    if (d / "shared_machine.json").exists():
        b = json.loads((d / "shared_machine.json").read_text())
        for policy, e in b.get("policies", {}).items():
            q = e.get("quick")
            if q:
                load = q["runs"]["alone"]["load_avg_before"][0]
                rows.append(f"| quick pre-training beside 1 / 3 busy processes (goals <= 2.5x / 5x) | "
                            f"{q['ratios']['beside_1']:.2f}x / {q['ratios']['beside_3']:.2f}x | {policy}; "
                            f"background load {load:.1f} (fair share given it "
                            f"{q['fair_share_ratio_given_background_load']['beside_1']:.2f}x / "
                            f"{q['fair_share_ratio_given_background_load']['beside_3']:.2f}x) |")
            dflt = e.get("default_beside_1")
            if dflt:
                steps = (f"; {dflt['steps']} steps (memorised at {dflt['memorised_step']}), "
                         f"{dflt['steps_per_second']} steps/s" if dflt.get("steps") else "")
                rows.append(f"| default base beside 1 busy process (goal < 600 s) | {dflt['wall_seconds']:.0f} s wall, "
                            f"{dflt['train_seconds']:.0f} s training, known QA {dflt['known_qa_accuracy']:.3f} | "
                            f"{policy}; background load {dflt['load_avg_before'][0]:.1f}{steps} |")
    if (d / "forecast.json").exists():
        b = json.loads((d / "forecast.json").read_text())
        sc = b["scaling"]
        rows.append(f"| forecast, 10k known x 1k SFT facts (goal < 60 s) | {b['seconds_10k_x_1k']:.1f} s wall, "
                    f"{b['cpu_seconds_10k_x_1k']:.1f} s CPU | {b.get('threads')} thread(s), load {b['load_average_1min'][0]}; "
                    f"x2 known facts: x{sc['ratio_watched_10k_over_5k']:.2f}, x2 SFT facts: x{sc['ratio_new_1000_over_500']:.2f} (CPU) |")
    if (d / "slick_real.json").exists():
        b = json.loads((d / "slick_real.json").read_text())
        load = b.get("load_average_1min") or {}
        rows.append(f"| few-shot SliCK of {b['facts']} real-data facts, default settings (goal < {b['goal_seconds'] / 60:.0f} min) | "
                    f"{b['seconds']:.0f} s ({b['seconds_per_fact']:.2f} s per fact; first implementation "
                    f"{b['reference_seconds_per_fact']:.2f} s per fact, {b['speedup_per_fact']}x) | {b['model']}; "
                    f"{b['threads']} thread(s), load {load.get('before')}-{load.get('after')}; same categories as the "
                    f"first implementation on {b['reference_same_category']} of {b['reference_facts']} |")
    for name, what, goal in (("figures_default", "every figure, default world, 3 seeds, from an empty run cache", 60),
                             ("figures_jobs2_produce", "every figure with --quick --produce, from nothing", 5),
                             ("figures_jobs2", "--quick from nothing (the 7 figures of fine-tuning runs)", 5),
                             ("figures", "--quick from nothing (the 7 figures of fine-tuning runs)", 5)):
        if (d / f"{name}.json").exists():
            b = json.loads((d / f"{name}.json").read_text())
            load = b.get("load_average_before")
            rows.append(f"| figures: {what} (goal < {goal} min) | {b['wall_seconds'] / 60:.1f} min wall, "
                        f"{b['cpu_seconds'] / 60:.1f} min CPU, {len(b.get('figures_built', []))} figures | "
                        f"`{b['command']}`" + (f"; load {load[0]:.1f}" if load else "") + " |")
    if not rows:
        return None
    return "\n".join(["| benchmark | measured | notes |", "|---|---|---|", *rows])


def command_times_section() -> str | None:
    """How long each README command takes on this 2-core machine, from the benchmark result files."""
    d = ROOT / "benchmarks" / "results"
    rows = []
    if (d / "cli_help.json").exists():
        b = json.loads((d / "cli_help.json").read_text())
        worst = max(b["commands"].items(), key=lambda kv: kv[1]["max_seconds"])
        rows.append(f"| `python -m interference.<any command> --help` | {worst[1]['max_seconds']:.2f} s at most "
                    f"({worst[0]}) | `benchmarks/cli_help.py`, load {b['load_average_1min']} |")
    if (d / "quick.json").exists():
        b = json.loads((d / "quick.json").read_text())
        load = f"load {b['load_average_1min_start']}-{b['load_average_1min_end']}"
        for cmd, v in b["commands"].items():
            shows = (f"; learned {v['learned']:.2f} of {v['n_new']} new facts, forgot {v['forgotten']} of "
                     f"{v['n_known_held_out']} held-out known" if "learned" in v else "")
            shown = cmd if cmd.startswith("forecast (") else f"python -m interference.{cmd}"
            rows.append(f"| `{shown}` | {v['seconds']:.0f} s{shows} | `benchmarks/quick.py`, a fresh interpreter "
                        f"each (most of it importing torch and transformers), {load} |")
    if (d / "shared_machine.json").exists():
        for policy, e in json.loads((d / "shared_machine.json").read_text()).get("policies", {}).items():
            dflt = e.get("default_beside_1")
            if dflt and "package default" in policy:
                rows.append(f"| `python -m interference.pretrain` (default base) | {dflt['wall_seconds'] / 60:.1f} min "
                            f"({dflt['steps']} steps) | `benchmarks/shared_machine.py --default`, beside 1 busy process |")
    for name, cmd in (("figures", "python -m interference.figures --quick"),
                      ("figures_jobs2_produce", "python -m interference.figures --quick --produce --jobs 2"),
                      ("figures_default", "python -m interference.figures")):
        if (d / f"{name}.json").exists():
            b = json.loads((d / f"{name}.json").read_text())
            rows.append(f"| `{cmd}` | {b['wall_seconds'] / 60:.1f} min | `benchmarks/figures.py`, from an empty run cache |")
    if not rows:
        return None
    return "\n".join(["| command | takes (2 cores) | measured by |", "|---|---|---|", *rows])


def _est(e) -> str:
    if not e or e.get("value") is None:
        return "n/a"
    lo, hi = e.get("low"), e.get("high")
    return f"{e['value']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")


def real_fixture_section() -> str | None:
    """The hypothesis runners on the committed fixture that knows facts, at default settings, from
    ``analyses/results/real_fixture/*.json`` (``analyses/real_fixture.py`` writes them)."""
    d = RESULTS / "real_fixture"
    names = [n for n in ("localized", "localized_confirm", "localized_default", "behavior_cloning", "capacity_sweep")
             if (d / f"{n}.json").exists()]
    if not names:
        return None
    recs = {n: json.loads((d / f"{n}.json").read_text()) for n in names}

    def rate(r):
        lr = r.get("learning_rate") or {}
        sweep = ", ".join(f"{x['lr']:g}: {x['known_only_drift']:.3f}" for x in lr.get("sweep", []))
        return f"{lr.get('value'):g} ({lr.get('chosen_by')}; Known-only drift {sweep})"

    def counts(r):
        return ", ".join(f"{k} {v}" for k, v in r["counts"].items())

    def checks(r):
        return "; ".join(f"{k}: {'pass' if ok else 'FAIL'}" for k, ok in r["checks"].items()) or "none"

    def wall(r):
        s = r.get("wall_seconds")
        return f"{s / 60:.0f} min" + (f" (load {r['load_average_1min_end'][0]} at the end)"
                                       if r.get("load_average_1min_end") else "") if s else "n/a"
    def seeds(r):
        first = (r.get("config") or {}).get("first_seed") or 0
        return f"{r['seeds']}" + (f" (seeds {first}-{first + r['seeds'] - 1}, fresh)" if first else "")
    rows = [("verdict", lambda r: f"`{r['verdict']}`"), ("endpoint (mean [95% CI])", lambda r: _est(r["endpoint"])),
            ("seeds", seeds), ("required checks", checks),
            ("rate", rate), ("Known-only drift at that rate", lambda r: f"{r['known_only_drift']:.3f}"),
            ("counts (adapted)", counts), ("wall time, 2 shared cores", wall)]
    label = {"localized": "localized (pilot)", "localized_confirm": "localized (confirmation: decides)",
             "localized_default": "localized (20-seed default)"}
    out = ["| | " + " | ".join(label.get(n, n) for n in names) + " |", "|---|" + "---|" * len(names)]
    out += [f"| {label} | " + " | ".join(fn(recs[n]) for n in names) + " |" for label, fn in rows]
    out.append("")
    out.append("Commands: " + "; ".join(f"`{recs[n]['command']}`" for n in names) + ".")
    out += [f"\n{n}: {recs[n]['note']}" for n in names if recs[n].get("note")]
    for n in [n for n in names if n.startswith("localized")]:
        r = recs[n]
        effect = dict((k, v) for k, v in r["headline"])["targets - rest, share2"]  # equal learning
        eff = effect["value"]
        ok = r["known_only_drift"] < 0.5 * eff
        out.append(f"\n{label.get(n, n)}: Known-only drift {r['known_only_drift']:.3f} against the share2 arm's targets - "
                   f"rest {eff:.3f}: {'below' if ok else 'not below'} half of it (the acceptance check of "
                   "`tests/test_real_fixture_results.py`)" + ("." if ok else "; against the share2 arm's whole "
                   f"watched forgetting ({r['watched_forgetting_by_arm']['share2']:.3f}) it is small."))
        m = r.get("known_only_drift_matched")
        if m:  # the drift read per seed at the step the effect is read (docs/localized_fixture_default.md)
            mok = m["matched"]["value"] < 0.5 * eff
            steps = sorted({row["matched_step"] for row in m["per_seed"] if row["matched_step"] is not None})
            low = effect.get("low")
            margin = ("" if low is None else f", though not below half of the effect's lower bound ({low / 2:.3f})"
                      if m["matched"]["value"] >= 0.5 * low else f", and below half of its lower bound ({low / 2:.3f})")
            out.append(f"Read on the same {m['matched']['n']} seeds at the step where each seed's share2 arm learned its "
                       f"new facts (step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))} of "
                       f"{r['counts'].get('steps')}), Known-only drift is {_est(m['matched'])}: "
                       f"{'below' if mok else 'not below'} half of the targets - rest {_est(effect)}{margin} (the check "
                       f"pre-registered in `docs/localized_fixture_default.md`). At the last step it is {_est(m['final'])}.")
    out.append("\nRequired checks, by each rule: localized's turn any verdict inconclusive; behavior_cloning's and "
               "capacity's only a positive one (with no rise, 'I don't know' has no rise to lower).")
    return "\n".join(out)


SECTIONS = {"PRETRAIN-RESULTS": pretrain_section, "BENCHMARKS": benchmarks_section,
            "COMMAND-TIMES": command_times_section, "REAL-FIXTURE-RESULTS": real_fixture_section}


def main() -> int:
    for doc in ("README.md", "docs/REAL_MODELS.md"):
        update(ROOT / doc)
    return 0


def update(readme: Path) -> None:
    text = readme.read_text()
    for name in re.findall(r"<!-- ([A-Z0-9_-]+) -->", text):
        body = SECTIONS.get(name, lambda: None)()
        f = RESULTS / f"{name.lower()}.md"
        if body is None and f.exists():
            body = f.read_text().strip()
            if body.startswith("## "):  # the README section has its own heading
                body = body.split("\n", 1)[1].strip()
        if body is None:
            print(f"skip {name}: no saved results yet")
            continue
        text = re.sub(rf"<!-- {name} -->.*?(<!-- /{name} -->|$)" if f"<!-- /{name} -->" in text else rf"<!-- {name} -->",
                      lambda _: f"<!-- {name} -->\n{body}\n<!-- /{name} -->", text, count=1, flags=re.S)
        print(f"updated {name} in {readme.name}")
    atomic_write_text(readme, text)


if __name__ == "__main__":
    raise SystemExit(main())
