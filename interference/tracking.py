"""Experiment tracking (``--report-to``): the run's numbers at each evaluation, to TensorBoard,
Weights & Biases or MLflow, as TRL / Hugging Face ``report_to`` users expect.

A ``Tracker`` is a fine-tuning callback (``interference.train``: the one loop's timeline callback
drives it after every evaluation, including step 0), so it sees exactly what ``metrics.json`` and
``timeline.jsonl`` record: nothing is computed twice and tracking cannot change a run. Per
evaluation it logs

- ``loss``: the training loss of the last update (not at step 0, before any update);
- ``accuracy/<set>``: accuracy on task, plasticity and stability;
- ``forgotten/<set>``: facts of the set the base answered right and the model now answers wrong
  (the forgetting count; 0 at step 0), and ``learned/plasticity``: new facts now answered right.

Off by default. TensorBoard writes event files to ``OUT/tensorboard`` (needs the ``tensorboard``
package); W&B (``wandb``) and MLflow (``mlflow``) log to wherever their own environment variables
point, and are refused in one sentence when not installed.
"""
from __future__ import annotations

import json
from pathlib import Path

BACKENDS = ("tensorboard", "wandb", "mlflow")
TB_DIR = "tensorboard"


def scalars(ctx, base_correct: dict[str, bool]) -> dict[str, float]:
    """The numbers of one evaluation: loss, accuracy per set, forgetting / learning counts.
    Pure: ``ctx.last_eval``, ``ctx.last_loss``, ``ctx.timeline`` and the base's correctness."""
    out = {}
    if ctx.last_loss is not None:
        out["loss"] = float(ctx.last_loss)
    for name, acc in ctx.last_eval.items():
        out[f"accuracy/{name}"] = float(acc)
    forgotten, learned = {}, 0
    for r in ctx.timeline:
        was = base_correct.get(r["fact_id"])
        if was and not r["correct"]:
            forgotten[r["set"]] = forgotten.get(r["set"], 0) + 1
        if r["set"] == "plasticity" and r["correct"]:
            learned += 1
    for name in ctx.last_eval:
        out[f"forgotten/{name}"] = float(forgotten.get(name, 0))
    out["learned/plasticity"] = float(learned)
    return out


class Tracker:
    """Fine-tuning callback that sends ``scalars`` to one backend's ``log(values, step)``."""

    backend = "none"

    def __init__(self, out: Path):
        self.out = Path(out)
        self.base: dict[str, bool] = {}

    def on_start(self, ctx) -> None:
        self.open(ctx)

    def on_eval(self, ctx, step: int) -> None:
        if step == 0:
            self.base = {r["fact_id"]: bool(r["correct"]) for r in ctx.timeline}
        elif not self.base:  # a resumed run: step 0 was evaluated before the interruption
            self.base = _base_from_timeline(self.out / "timeline.jsonl")
        self.log(scalars(ctx, self.base), step)

    def on_end(self, ctx) -> None:
        self.close()

    def open(self, ctx) -> None:  # pragma: no cover - per backend
        raise NotImplementedError

    def log(self, values: dict[str, float], step: int) -> None:  # pragma: no cover - per backend
        raise NotImplementedError

    def close(self) -> None:
        pass


def _base_from_timeline(path: Path) -> dict[str, bool]:
    base = {}
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line) if line else None
            if r and r["step"] == 0:
                base[r["fact_id"]] = bool(r["correct"])
    return base


class TensorBoard(Tracker):
    backend = "tensorboard"

    def open(self, ctx) -> None:
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(self.out / TB_DIR))

    def log(self, values, step) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandB(Tracker):
    backend = "wandb"

    def open(self, ctx) -> None:
        import wandb
        cfg = ctx.config.to_dict() if hasattr(ctx.config, "to_dict") else {}
        self.run = wandb.init(project="interference", name=self.out.name, dir=str(self.out), config=cfg)

    def log(self, values, step) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class MLflow(Tracker):
    backend = "mlflow"

    def open(self, ctx) -> None:
        import mlflow
        self.mlflow = mlflow
        mlflow.start_run(run_name=self.out.name)

    def log(self, values, step) -> None:
        self.mlflow.log_metrics({k.replace("/", "_"): v for k, v in values.items()}, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


_CLASSES = {"tensorboard": (TensorBoard, "tensorboard"), "wandb": (WandB, "wandb"), "mlflow": (MLflow, "mlflow")}


def make_tracker(name: str, out: Path) -> Tracker:
    """The tracker ``--report-to name`` asks for; a backend that is not installed is refused in one
    sentence before anything is written."""
    import importlib.util
    if name not in _CLASSES:
        raise ValueError(f"--report-to {name!r} is not a tracker; use one of {', '.join(BACKENDS)} or none.")
    cls, module = _CLASSES[name]
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"--report-to {name} needs the {module} package, which is not installed; "
                         f"`pip install {module}` or leave --report-to out.")
    return cls(out)
