"""The figure registry: one ``Figure`` per figure of the paper (see ``interference.figures``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import interference.figures.compute_mechanism as cm
import interference.figures.compute_training as ct
import interference.figures.inputs as inputs
import interference.figures.plot_mechanism as pm
import interference.figures.plot_results as pr
import interference.figures.plot_training as pt
from interference.figures.config import ArmsConfig, LocalizedFigureConfig, ParamSpaceConfig, ResultsConfig
from interference.figures.runs import MissingInput, RunCache


@dataclass
class FigureContext:
    """What a compute step may use: the run cache and where other commands' results live."""
    cache: RunCache
    quick: bool

    def path(self, p: str) -> Path:
        return Path(p)  # relative to the working directory, like every other CLI of the package


@dataclass(frozen=True)
class Figure:
    name: str
    paper: str  # the counterpart in Kaplan et al. 2026 (or Gekhman et al. 2024)
    shows: str
    config: type
    compute: Callable  # (cfg, FigureContext) -> data dict
    plot: Callable  # (data dict, out dir) -> [png, pdf]
    reads_results: bool = False  # drawn from another command's output: re-read every time, never cached
    refresh: Callable | None = None  # (cfg, ctx, data) -> data: re-reads the parts of cached data owned elsewhere


def _capacity(cfg: ResultsConfig, ctx: FigureContext) -> dict:
    return inputs.capacity_series(ctx.path(cfg.hypotheses_dir), ctx.quick)


def _hypotheses(cfg: ResultsConfig, ctx: FigureContext) -> dict:
    return inputs.hypotheses_summary(ctx.path(cfg.hypotheses_dir), cfg.hypotheses, ctx.quick)


def _decomposition(cfg: ResultsConfig, ctx: FigureContext) -> dict:
    return inputs.verdict(ctx.path(cfg.decomposition_dir), "decomposition", ctx.quick)


def _plot_decomposition(v: dict, out) -> list:
    from interference.plots import plot_decomposition  # the run's own figure, drawn from its verdict
    return plot_decomposition(v, Path(out))


def _forecast(cfg: ResultsConfig, ctx: FigureContext) -> dict:
    return inputs.forecast(ctx.path(cfg.forecast_dir), ctx.quick)


FIGURES: dict[str, Figure] = {f.name: f for f in (
    Figure("param_space", "Fig. 1 (parameter-space picture of SFT-induced forgetting)",
           "Regions of a real 2-D slice of parameter space (base + span of the SFT and self-distillation end "
           "points) where held-out known facts, the task and the new facts are answered; both training paths "
           "projected from saved parameter snapshots.", ParamSpaceConfig, cm.param_space, pm.plot_param_space),
    Figure("curves", "Fig. 2 / Sec. 4 (stability and plasticity during training)",
           "Held-out known accuracy, new-fact accuracy and task accuracy over training, one line per method, "
           "95% CI bands over seeds.", ArmsConfig, ct.curves, pt.plot_curves),
    Figure("tradeoff", "Fig. 3 (stability-plasticity trade-off across methods)",
           "Final new-fact accuracy vs final held-out accuracy for each method at several strengths.",
           ArmsConfig, ct.tradeoff, pt.plot_tradeoff),
    Figure("hallucination", "Gekhman et al. 2024, Fig. 3 (performance vs % Unknown)",
           "Hallucination (confident wrong) and forgetting of base-known facts vs the share of Unknown facts "
           "in the SFT set (0 to 100%), and held-out accuracy over training per share.",
           ArmsConfig, ct.hallucination, pt.plot_hallucination),
    Figure("freezing", "Sec. 5 (attention-only vs MLP-only training)",
           "Task, new-fact and held-out accuracy after SFT that trains only some parameter groups "
           "(attention, MLP, all but embeddings, lower or upper layers).", ArmsConfig, ct.freezing, pt.plot_freezing),
    Figure("capacity", "Sec. 6.1 (capacity hypothesis)",
           "Forgetting vs number of new facts for uuid vs semantic keys per model size, and the capacity "
           "experiment's statistics, from the capacity hypothesis' verdict.", ResultsConfig, _capacity,
           pm.plot_capacity, reads_results=True),
    Figure("localized", "Sec. 6.3 (localized interference)",
           "Forgetting by base-model overlap with the new facts (with the fragility baseline's AUROC), target vs "
           "non-target forgetting in the designed intervention, representation drift over training per method.",
           LocalizedFigureConfig, cm.localized, pm.plot_localized, refresh=cm.refresh_localized),
    Figure("attribution", "Sec. 6.3 (which parameters carry the forgetting)",
           "Share of the forgetting undone by reverting each parameter group of each layer to the base, "
           "heatmap per method.", ArmsConfig, cm.attribution, pm.plot_attribution),
    Figure("forecast", "new: per-fact forecast of forgetting (issue 10)",
           "ROC curve and AUROC per predictor (combined forecast, fragility, overlap, gradient alignment, random) "
           "and the share of facts actually forgotten per forecast-risk decile.", ResultsConfig, _forecast,
           pr.plot_forecast, reads_results=True),
    Figure("decomposition", "Sec. 6 (which hypothesis is the main driver; new: one unit, by width)",
           "Each hypothesis' share of the same excess forgetting (semantic-name SFT over Known-only SFT) at each "
           "width, at equal steps and at equal learning, with 95% CIs, its word by the common rule, and every "
           "arm's forgetting.", ResultsConfig, _decomposition, _plot_decomposition, reads_results=True),
    Figure("hypotheses", "Sec. 6 (the three hypotheses)",
           "Each hypothesis' pre-registered endpoint with its 95% CI over seeds, coloured by verdict.",
           ResultsConfig, _hypotheses, pr.plot_hypotheses, reads_results=True),
)}


def planned_runs(cfg) -> list[tuple]:
    """(arm, seed, settings) of every fine-tuning run a config needs (none for result readers)."""
    arms = getattr(cfg, "arms", ())
    if isinstance(cfg, ParamSpaceConfig):
        return [(a, cfg.seed, cfg.run) for a in arms]
    return [(a, s, cfg.run) for a in arms for s in range(getattr(cfg, "seeds", 0))]


__all__ = ["FIGURES", "Figure", "FigureContext", "MissingInput", "planned_runs"]
