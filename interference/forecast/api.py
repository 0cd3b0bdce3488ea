"""The forecast as users call it: an SFT set in, a ranked table of at-risk known facts out.

    from interference.forecast import forecast_run, forecast_for_fact
    fc = forecast_run("runs/sft")                 # a run directory (or its sft_data.json)
    fc["sft"].rows()[:10]                         # most at-risk first, with the new facts driving each
    forecast_for_fact(fc["sft"], "512:speaks")    # one fact: risk, rank, features, drivers

The SFT-set file is what ``interference.train.finetune`` writes (``sft_data.json``: train ids,
unknown ids, evaluation sets); next to a run's ``config.json`` it also tells which base model,
QA template and new entities the ids refer to. The watched facts are its ``stability`` set, or,
when the file has none, every HighlyKnown statement-only fact of the base outside the SFT set.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from interference.data import Fact
from interference.forecast.combine import Combiner, CombinerError
from interference.forecast.predict import FeatureTable, compute_features

PACKAGED = resources.files("interference.forecast")  # package data: found in a wheel as in the checkout
COMBINER_FILES = ("default_combiner.json", "quick_combiner.json")  # fitted by analyses/forecast_eval.py


class ForecastInputError(ValueError):
    """An SFT-set file or base model the forecast cannot use."""


@dataclass
class Forecast:
    method: str
    table: FeatureTable
    risk: np.ndarray  # P(forgotten) per watched fact
    facts: dict  # fact_id -> Fact

    def rows(self, top: int | None = None) -> list[dict]:
        """Watched facts ranked by risk, highest first."""
        order = np.argsort(-self.risk, kind="stable")[: top or None]
        n = len(self.risk)
        out = []
        for rank, i in enumerate(order, 1):
            fid = self.table.fact_ids[i]
            f = self.facts[fid]
            drv = self.table.drivers[i] if self.table.drivers else []
            out.append({"rank": rank, "fact_id": fid, "subject": f.subject, "relation": f.relation,
                        "answer": f.answer, "risk": round(float(self.risk[i]), 5),
                        "percentile": round(100.0 * (n - rank) / max(1, n - 1), 1),
                        "base_gold_logprob": round(-float(self.table.columns["neg_gold_logprob"][i]), 5),
                        "drivers": drv})
        return out

    def to_json(self, path: str | Path, top: int | None = None) -> None:
        from interference.io import atomic_write_json
        atomic_write_json(path, {"method": self.method, "n_watched": len(self.risk), "rows": self.rows(top)})

    def to_csv(self, path: str | Path, top: int | None = None) -> None:
        from interference.io import atomic_write_text
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["rank", "fact_id", "subject", "relation", "answer", "risk", "base_gold_logprob",
                    "driving_new_facts", "their_values"])
        for r in self.rows(top):
            w.writerow([r["rank"], r["fact_id"], r["subject"], r["relation"], r["answer"], r["risk"],
                        r["base_gold_logprob"], ";".join(d["fact_id"] for d in r["drivers"]),
                        ";".join(d["value"] for d in r["drivers"])])
        atomic_write_text(path, buf.getvalue())


def forecast_for_fact(fc: Forecast | str | Path, fact_id: str, method: str = "sft") -> dict:
    """One watched fact's forecast: its row of the ranked table (risk, rank, percentile, base
    log-prob, driving new facts with their values) plus its feature values. ``fc`` is a Forecast
    or a directory written by the CLI (``at_risk_<method>.json``)."""
    if not isinstance(fc, Forecast):
        path = Path(fc) / f"at_risk_{method}.json"
        if not path.exists():
            raise ForecastInputError(f"{path} does not exist; run `python -m interference.forecast` with --out {fc}.")
        rows = json.loads(path.read_text())["rows"]
        hit = [r for r in rows if r["fact_id"] == fact_id]
        if not hit:
            raise ForecastInputError(f"fact {fact_id!r} is not among the watched facts of {path}.")
        return hit[0]
    for r in fc.rows():
        if r["fact_id"] == fact_id:
            i = fc.table.fact_ids.index(fact_id)
            return {**r, "method": fc.method, "features": {k: float(v[i]) for k, v in fc.table.columns.items()}}
    raise ForecastInputError(f"fact {fact_id!r} is not among the watched facts of this forecast.")


def default_combiner(names: Sequence[str], method: str = "sft") -> Combiner:
    """The packaged combiner whose features this forecast has (one per model depth)."""
    tried = []
    for fname in COMBINER_FILES:
        for f in (PACKAGED / fname.replace(".json", f"_{method}.json"), PACKAGED / fname):
            if f.is_file():
                with resources.as_file(f) as local:  # a real path even from a zipped install
                    comb = Combiner.load(local)
                if set(comb.features) <= set(names):
                    return comb
                tried.append(f.name)
    raise CombinerError(f"no packaged combiner fits these features (tried {tried or 'none'}); fit one with "
                        "`python -m interference.forecast --evaluate` and pass it with --combiner.")


# ------------------------------------------------------------------ inputs
def read_sft_data(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "sft_data.json"
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ForecastInputError(f"SFT-set file {path} does not exist; pass the sft_data.json of a fine-tuning run.") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ForecastInputError(f"SFT-set file {path} is not JSON; pass the sft_data.json that interference.train.finetune writes.") from None
    if not isinstance(d, dict) or not isinstance(d.get("train"), list) or not isinstance(d.get("unknown_ids"), list) or not d["train"]:
        raise ForecastInputError(f"SFT-set file {path} lacks a non-empty 'train' list and an 'unknown_ids' list; "
                                 "pass the sft_data.json that interference.train.finetune writes.")
    d["_path"] = str(path)
    return d


def resolve_inputs(sft_data: str | Path, base: str | Path | None = None, device=None):
    """(model, tokenizer, base_dir, watch facts, train facts, new ids, slick, run config or None)."""
    from interference.models import ModelError, load_model
    from interference import bases
    from interference.bases import BaseSpec, load_slick
    from interference.world import World, WorldConfig

    d = read_sft_data(sft_data)
    run_cfg_path = Path(d["_path"]).parent / "config.json"
    cfg = None
    if run_cfg_path.exists():
        from interference.train import FinetuneConfig, base_dir_of
        try:
            cfg = FinetuneConfig.from_dict(json.loads(run_cfg_path.read_text()))
        except (ValueError, TypeError, json.JSONDecodeError):
            cfg = None
    base_dir = Path(base) if base else (base_dir_of(cfg) if cfg else bases.base_dir(BaseSpec.default()))
    if not (base_dir / "config.json").exists():
        raise ForecastInputError(f"no pre-trained base at {base_dir}; pass --base DIR (a directory written by interference.pretrain).")
    try:
        model, _, tok = load_model(base_dir, device=device)
    except ModelError as e:
        raise ForecastInputError(str(e)) from None
    world = World(WorldConfig.from_dict(json.loads((base_dir / "config.json").read_text())["world"]))
    template = cfg.data.train_template if cfg else 0
    ents = list(world.entities) + (world.new_entities(**cfg.new_entities) if cfg and cfg.new_entities else [])
    by_id = {f.fact_id: f for f in world.facts(ents, template=template)}
    missing = [i for i in d["train"] if i not in by_id]
    if missing:
        raise ForecastInputError(f"SFT fact {missing[0]!r} (and {len(missing) - 1} more) is not a fact of the base's world; "
                                 "pass the base model the SFT set was drawn for with --base.")
    slick = load_slick(base_dir) if (base_dir / "slick.jsonl").exists() else {}
    train = [by_id[i] for i in d["train"]]
    stab = (d.get("eval_sets") or {}).get("stability")
    if stab:
        watch = [by_id[i] for i in stab if i in by_id]
    else:
        used = set(d["train"]) | set((d.get("eval_sets") or {}).get("task", []))
        watch = [f for f in world.facts(world.split("statement_only"), template=template)
                 if f.fact_id not in used and slick.get(f.fact_id, {}).get("category") == "HighlyKnown"]
    if not watch:
        raise ForecastInputError("no watched (held-out known) facts: the SFT-set file has no stability set and the base "
                                 "knows no statement-only fact outside it.")
    return model, tok, base_dir, watch, train, set(d["unknown_ids"]), slick, cfg


def forecast_run(sft_data: str | Path, base: str | Path | None = None, methods: Sequence[str] = ("sft",),
                 combiner: str | Path | None = None, device=None) -> dict[str, Forecast]:
    """Forecast a run's SFT set (a run directory or its ``sft_data.json``) for each method;
    ``device`` is where the base model runs (None: the CPU)."""
    from interference.forecast.runs import METHOD_OPTIONS
    model, tok, base_dir, watch, train, new_ids, slick, cfg = resolve_inputs(sft_data, base, device)
    options = {m: dict(METHOD_OPTIONS.get(m, {})) for m in methods}
    if cfg is not None and cfg.method in options:
        options[cfg.method] = dict(cfg.method_options)
    teachers = {}
    if "self_distill" in methods:
        from interference.forecast.evaluate import teacher_for
        from interference.forecast.runs import run_config
        from interference.world import World, WorldConfig
        from interference.sft_data import SFTData
        sd_cfg = cfg if cfg is not None and cfg.method == "self_distill" else run_config("self_distill", cfg.seed if cfg else 0, base_dir=str(base_dir))
        world = World(WorldConfig.from_dict(json.loads((base_dir / "config.json").read_text())["world"]))
        known = [f for f in train if f.fact_id not in new_ids]
        data = SFTData(train=train, eval_sets={}, known_ids=[f.fact_id for f in known], unknown_ids=sorted(new_ids),
                       format_facts=known or train)
        teachers["self_distill"] = teacher_for(sd_cfg, model, tok, world, data, base_dir)
    tables = compute_features(model, tok, watch, train, new_ids, slick, methods=methods, method_options=options,
                              teachers=teachers)
    facts = {f.fact_id: f for f in watch}
    out = {}
    for m, t in tables.items():
        comb = Combiner.load(combiner) if combiner else default_combiner(t.names, m)
        out[m] = Forecast(m, t, comb.predict(t.columns), facts)
    return out
