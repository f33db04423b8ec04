"""The MLflow observer of a training run: params at the start, metrics per epoch, artifacts and the
pyfunc model at the end."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import LoggedModelStatus

from aenet_exp.errors import UserError, first_line, root_cause, warn
from aenet_exp.evaluation.predictions import Predictions
from aenet_exp.evaluation.uncertainty import COVERAGE_LEVELS
from aenet_exp.files import write_atomically
from aenet_exp.rundir import MODEL_FILE, RUN_ID_FILE
from aenet_exp.tracking.flatten import flatten_params
from aenet_exp.tracking.git import project_git_commit
from aenet_exp.tracking.mlflow_run import (
    MlflowRun,
    default_artifact_location,
    get_or_create_experiment,
    open_client,
)
from aenet_exp.tracking.plots import calibration_png, error_vs_sigma_png, learning_curve_png, parity_png
from aenet_exp.tracking.sweep import SWEPT_TAG, find_sweep_parent
from aenet_exp.training.events import Callback

LEARNING_CURVE = "learning_curve.png"
PARITY = "parity.png"
CALIBRATION = "calibration.png"  # a committee's, of the test set (else the training set)
ERROR_VS_SIGMA = "error_vs_sigma.png"


def uncertainty_plots(predictions: Mapping[str, Predictions], out: Path) -> None:
    """A committee's calibration and error-vs-σ plots of the test set (else the training set), into ``out``."""
    shown = predictions.get("test") or predictions.get("train")
    if shown is None or shown.energy_std is None:
        return
    quantities = {"energy per atom": (shown.energy_errors(), "eV/atom")}
    if shown.force_components()[0].size:
        quantities["force component"] = (shown.force_errors(), "eV/Å")
    calibration_png(out / CALIBRATION, {name: pair for name, (pair, _) in quantities.items()}, COVERAGE_LEVELS)
    error_vs_sigma_png(out / ERROR_VS_SIGMA, quantities)


def recorded_run_id(run_dir: str | Path) -> str | None:
    """The MLflow run id a training in ``run_dir`` recorded to, if any."""
    path = Path(run_dir) / RUN_ID_FILE
    return path.read_text().strip() if path.is_file() else None


# Overrides that say where things are, not what differs: left out of run names.
UNNAMED = ("hydra.", "tracking.", "data.path", "data.test_path", "data.database", "data.E_atomic", "data.name",
           "normalization.E_atomic", "resume", "init_from", "caching.persist_dir")
MAX_NAME = 80


def run_name_of(overrides: Sequence[str], data_name: str, swept: Sequence[str] | None = None) -> str:
    """A run name saying what differs: the data's name, the experiment, then the overrides as ``key=value`` with
    the key's last part (``tio2-sample mu=0.001 weight=0.1``); in a sweep only the keys it varies (``swept``)."""
    parts, data_given = [], False
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key in ("data", "data.path", "data.database"):
            data_given = True
        if key == "experiment":
            parts.insert(0, value)
        elif not key.startswith(UNNAMED) and key != "data" and (swept is None or key in swept):
            parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
    if data_given or not parts:
        parts.insert(0, data_name)
    name = " ".join(parts)
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


def swept_of(uri: str, parent: str | None) -> list[str] | None:
    """The keys the sweep ``parent`` varies (None outside a sweep)."""
    if parent is None:
        return None
    tag = open_client(uri).get_run(parent).data.tags.get(SWEPT_TAG, "")
    return [key for key in tag.split(",") if key]


def dataset_profile(facts: Mapping[str, object]) -> dict[str, object]:
    """What the Dataset column shows of the data: structures, atoms, species, forces, the split."""
    keys = ("structures", "atoms", "species", "force_structures", "train_structures", "test_structures")
    return {key: facts[f"dataset.{key}"] for key in keys if f"dataset.{key}" in facts}


class TrackingUnavailable(UserError):
    """The MLflow store cannot be opened or written; raised before training starts."""


def check_store(uri: str, experiment: str) -> None:
    """Open the MLflow store at ``uri`` and its ``experiment`` (made when missing) before a command's work;
    TrackingUnavailable naming ``tracking.uri`` when they cannot be."""
    try:
        get_or_create_experiment(open_client(uri), experiment, default_artifact_location(uri))
    except Exception as error:  # MLflow and SQLAlchemy raise many types for an unusable store
        raise TrackingUnavailable(f"tracking.uri: cannot record to {uri}: {first_line(error)}") from None


class MlflowObserver(Callback):
    """Records one training run in MLflow.

    Args:
        tracking: the ``tracking`` config (``uri``, ``experiment``, ``run_name``, ``log_model``, ``register``).
        overrides: the command-line overrides, recorded as a tag.
        sweep_dir: the Hydra sweep directory of a multirun job (its run becomes a child of the sweep's).
        run_dir: the training's output directory, where the run id is kept for a later resume.
        resume_run_id: continue this run (a resumed training) instead of creating one.
        parent_run_id: the run this one is a child of (a campaign's generation), when not a sweep's job.
    """

    def __init__(
        self,
        tracking: Mapping,
        overrides: Sequence[str] = (),
        sweep_dir: str | None = None,
        run_dir: str | Path | None = None,
        resume_run_id: str | None = None,
        parent_run_id: str | None = None,
    ):
        self.tracking = tracking
        self.parent_run_id = parent_run_id
        self.overrides = list(overrides)
        self.sweep_dir = sweep_dir
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.resume_run_id = resume_run_id
        self.run: MlflowRun | None = None
        self.logged: dict[str, int] = {}  # last step logged per metric (a resumed run)
        self.models: set[str] = set()  # the run's logged models before this process

    def on_start(self, config: dict, facts: dict) -> None:
        t = self.tracking
        if self.resume_run_id:
            self.continue_run()
            return
        parent = find_sweep_parent(t["uri"], t["experiment"], self.sweep_dir) if self.sweep_dir else self.parent_run_id
        swept = swept_of(t["uri"], parent)
        tags = {"aenet_exp.overrides": " ".join(self.overrides) or "(none)", "aenet_exp.role": "job"}
        commit = project_git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        params = {**flatten_params(config), **{k: str(v) for k, v in facts.items()}}
        name = t["run_name"] or run_name_of(self.overrides, config["data"]["name"], swept)
        try:
            self.run = MlflowRun.start(t["uri"], t["experiment"], name, params, tags, parent_run_id=parent)
            path = config["data"]["database"] or config["data"]["path"]
            self.run.log_dataset(config["data"]["name"], str(facts.get("dataset.digest", "")),
                                 path if isinstance(path, str) else ", ".join(map(str, path)), dataset_profile(facts))
        except Exception as error:  # MLflow and SQLAlchemy raise many types for an unusable store
            raise TrackingUnavailable(f"tracking.uri: cannot record to {t['uri']}: {first_line(error)}") from error
        if self.run_dir is not None:
            write_atomically(self.run_dir / RUN_ID_FILE, self.run.run_id + "\n")
        print(f"MLflow run {self.run.run_id} in experiment '{t['experiment']}' at {t['uri']}")

    def continue_run(self) -> None:
        """Attach to the resumed run; what it logged before is not logged again, half-logged models are failed."""
        uri = self.tracking["uri"]
        try:
            self.run = MlflowRun.attach(uri, self.resume_run_id)
            self.run.set_tags({"aenet_exp.resumed_with": " ".join(self.overrides)})
            self.logged = self.run.logged_steps()
            self.run.fail_pending_models()
            self.models = {m.model_id for m in self.run.logged_models()}
        except Exception as error:  # the store or the run is gone
            raise TrackingUnavailable(
                f"tracking.uri: the MLflow run {self.resume_run_id} of {self.run_dir} cannot be continued at {uri} "
                f"({first_line(root_cause(error))}); resume with tracking.enabled=false, or delete {self.run_dir / RUN_ID_FILE} "
                "to record the rest as a new MLflow run"
            ) from None
        print(f"MLflow run {self.run.run_id} continued at {uri}")

    def unlogged(self, metrics: dict[str, float], step: int) -> dict[str, float]:
        """The ``metrics`` of ``step`` that the run does not have yet (a resumed run repeats epochs after its checkpoint)."""
        return {key: value for key, value in metrics.items() if key not in self.logged or self.logged[key] < step}

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        with self.store_failures(f"at epoch {epoch + 1}"):
            self.run.log_metrics(self.unlogged(metrics, epoch + 1), step=epoch + 1)

    def on_end(self, result) -> None:
        with self.store_failures("at the end"):
            self.record_end(result)

    def record_end(self, result) -> None:
        out = Path(result.output_dir)
        if result.history:  # a committee combined from runs (ensemble) has no epochs
            learning_curve_png(result.history, out / LEARNING_CURVE)
        energies = {name: p.relative_energy_per_atom() for name, p in result.predictions.items()}
        relative = any(p.reference is not None for p in result.predictions.values())
        forces = {name: p.force_components() for name, p in result.predictions.items()}
        forces = {name: pair for name, pair in forces.items() if pair[0].size} or None
        parity_png(out / PARITY, energies, forces, "cohesive energy" if relative else "total energy")
        uncertainty_plots(result.predictions, out)
        final = {k: v for k, v in result.metrics.items() if k.startswith("final/")}
        step = len(next(iter(result.history.values()), []))
        new_final = self.unlogged(final, step)
        self.run.log_metrics(new_final, step=step)
        for path in sorted(out.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                self.run.log_artifact(path)
        if self.tracking.get("log_model", True) and not (final and not new_final and self.has_ready_model()):
            self.log_model(out / MODEL_FILE, step)  # .get: configs of checkpoints older than the key
        self.run.finish("FINISHED")

    def has_ready_model(self) -> bool:
        """Whether the run had a whole logged model before this process (its end was recorded already)."""
        return any(m.status == LoggedModelStatus.READY for m in self.run.logged_models() if m.model_id in self.models)

    @contextmanager
    def store_failures(self, when: str) -> Iterator[None]:
        """A store failing mid-run becomes one line for the user (the checkpoint stays; see :meth:`continue_run`)."""
        try:
            yield
        except Exception as error:  # MLflow, SQLAlchemy and the OS raise many types
            where = f"; the checkpoint in {self.run_dir} is kept: resume={self.run_dir} continues" if self.run_dir else ""
            raise TrackingUnavailable(
                f"tracking.uri: the MLflow store at {self.tracking['uri']} failed {when}: {first_line(root_cause(error))}{where}"
            ) from error

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
        """Mark the run KILLED (interrupted) or FAILED with the reason, as far as the store still answers."""
        if self.run is None:
            return
        try:
            self.run.abort(error)
        except Exception as failure:  # the store itself may be what failed
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            warn(f"MLflow run {self.run.run_id} could not be marked {status}: {first_line(root_cause(failure))}")
