"""The MLflow observer of a training run: params at the start, metrics per epoch, artifacts and the
pyfunc model at the end."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from aenet_exp.errors import UserError
from aenet_exp.files import write_atomically
from aenet_exp.model.potential import MODEL_FILE
from aenet_exp.tracking.flatten import flatten_params
from aenet_exp.tracking.git import project_git_commit
from aenet_exp.tracking.mlflow_run import MlflowRun
from aenet_exp.tracking.plots import learning_curve_png, parity_png
from aenet_exp.tracking.sweep import find_sweep_parent
from aenet_exp.training.events import Callback

LEARNING_CURVE = "learning_curve.png"
PARITY = "parity.png"
RUN_ID_FILE = "mlflow_run_id"


def recorded_run_id(run_dir: str | Path) -> str | None:
    """The MLflow run id a training in ``run_dir`` recorded to, if any."""
    path = Path(run_dir) / RUN_ID_FILE
    return path.read_text().strip() if path.is_file() else None


class TrackingUnavailable(UserError):
    """The MLflow store cannot be opened or written; raised before training starts."""


class MlflowObserver(Callback):
    """Records one training run in MLflow.

    Args:
        tracking: the ``tracking`` config (``uri``, ``experiment``, ``run_name``, ``log_model``, ``register``).
        overrides: the command-line overrides, recorded as a tag.
        sweep_dir: the Hydra sweep directory of a multirun job (its run becomes a child of the sweep's).
        run_dir: the training's output directory, where the run id is kept for a later resume.
        resume_run_id: continue this run (a resumed training) instead of creating one.
    """

    def __init__(
        self,
        tracking: Mapping,
        overrides: Sequence[str] = (),
        sweep_dir: str | None = None,
        run_dir: str | Path | None = None,
        resume_run_id: str | None = None,
    ):
        self.tracking = tracking
        self.overrides = list(overrides)
        self.sweep_dir = sweep_dir
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.resume_run_id = resume_run_id
        self.run: MlflowRun | None = None

    def on_start(self, config: dict, facts: dict) -> None:
        t = self.tracking
        if self.resume_run_id:
            self.run = MlflowRun.attach(t["uri"], self.resume_run_id)
            self.run.set_tags({"aenet_exp.resumed_with": " ".join(self.overrides)})
            print(f"MLflow run {self.run.run_id} continued at {t['uri']}")
            return
        parent = find_sweep_parent(t["uri"], t["experiment"], self.sweep_dir) if self.sweep_dir else None
        tags = {"aenet_exp.overrides": " ".join(self.overrides) or "(none)", "aenet_exp.role": "job"}
        commit = project_git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        params = {**flatten_params(config), **{k: str(v) for k, v in facts.items()}}
        try:
            self.run = MlflowRun.start(t["uri"], t["experiment"], t["run_name"], params, tags, parent_run_id=parent)
        except Exception as error:  # MLflow and SQLAlchemy raise many types for an unusable store
            raise TrackingUnavailable(f"tracking.uri: cannot record to {t['uri']}: {error}") from error
        if self.run_dir is not None:
            write_atomically(self.run_dir / RUN_ID_FILE, self.run.run_id + "\n")
        print(f"MLflow run {self.run.run_id} in experiment '{t['experiment']}' at {t['uri']}")

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.run.log_metrics(metrics, step=epoch + 1)

    def on_end(self, result) -> None:
        out = Path(result.output_dir)
        learning_curve_png(result.history, out / LEARNING_CURVE)
        energies = {name: p.energy_per_atom() for name, p in result.predictions.items()}
        forces = {name: p.force_components() for name, p in result.predictions.items()}
        forces = {name: pair for name, pair in forces.items() if pair[0].size} or None
        parity_png(out / PARITY, energies, forces)
        final = {k: v for k, v in result.metrics.items() if k.startswith("final/")}
        step = len(next(iter(result.history.values()), []))
        self.run.log_metrics(final, step=step)
        for path in sorted(out.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                self.run.log_artifact(path)
        if self.tracking.get("log_model", True):  # .get: configs of checkpoints older than the key
            self.log_model(out / MODEL_FILE, step)
        self.run.finish("FINISHED")

    def log_model(self, potential_file: Path, step: int) -> None:
        """Log the pyfunc model ``runs:/<run_id>/model``; register it when ``tracking.register`` names a model."""
        start = time.perf_counter()
        model = self.run.log_model(potential_file, step)
        message = f"MLflow model runs:/{self.run.run_id}/model"
        name = self.tracking.get("register")
        if name:
            message += f", registered as models:/{name}/{self.run.register_model(name, model)}"
        print(f"{message} ({time.perf_counter() - start:.1f} s)")

    def on_failure(self, error: BaseException) -> None:
        if self.run is not None:
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            self.run.finish(status, reason=f"{type(error).__name__}: {error}")
