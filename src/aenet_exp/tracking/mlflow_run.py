"""An MLflow run driven through MlflowClient by explicit run id (no fluent global run)."""

from __future__ import annotations

import fcntl
import json
import logging
import math
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModel,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Param,
    Run,
    RunTag,
)
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ALREADY_EXISTS, RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from aenet_exp.tracking.flatten import flatten_params
from aenet_exp.tracking.retry import DATASET_RACE_MESSAGE, retry_locked

try:
    from mlflow.utils.validation import (
        MAX_ENTITY_KEY_LENGTH,
        MAX_METRICS_PER_BATCH,
        MAX_PARAM_VAL_LENGTH,
        MAX_PARAMS_TAGS_PER_BATCH,
        MAX_TAG_VAL_LENGTH,
    )
except ImportError:  # limits moved or renamed in some MLflow version
    MAX_ENTITY_KEY_LENGTH, MAX_METRICS_PER_BATCH = 250, 1000
    MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH = 6000, 100, 8000

_logger = logging.getLogger(__name__)
# MLflow announces creating and migrating a store's tables on stderr at INFO: noise in a training's output.
for _noisy in ("mlflow.store.db.utils", "alembic.runtime.migration"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

FAILURE_REASON_TAG = "aenet_exp.failure_reason"
# MLflow 3's UI opens an experiment of this kind on its runs table (not on the GenAI traces overview).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = {EXPERIMENT_KIND_TAG: "custom_model_development"}
REGISTERED_MODEL_TAG = "aenet_exp.registered_model"
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
SQLITE_PREFIX = "sqlite:///"
_INVALID_KEY_CHARS = re.compile(r"[^\w.\- /]")
_SQLALCHEMY_NOLOAD_WARNING = r"The ``noload`` loader strategy is deprecated"

E = TypeVar("E")


class MlflowRun:
    """One MLflow run, addressed by its id; also a context manager that records failures."""

    def __init__(self, client: MlflowClient, run: Run) -> None:
        self._client = client
        self._info = run.info
        self._finished = False

    @classmethod
    def start(
        cls,
        uri: str,
        experiment: str,
        run_name: str | None,
        params: Mapping[str, object],
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
        artifact_location: str | None = None,
    ) -> MlflowRun:
        """Create a run in `experiment` (created if missing) and log its (possibly nested) params.

        `artifact_location` applies only when the experiment is new; by default a SQLite store
        at ``P`` keeps artifacts in ``P.parent / "mlartifacts"``, other stores use MLflow's default.
        """
        client = open_client(uri)
        location = artifact_location or default_artifact_location(uri)
        experiment_id = get_or_create_experiment(client, experiment, location)
        run_tags = dict(tags)
        if parent_run_id is not None:
            run_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        created = retry_locked(
            partial(
                client.create_run,
                experiment_id,
                tags=_clean(run_tags, MAX_TAG_VAL_LENGTH),
                run_name=run_name,
            )
        )
        run = cls(client, created)
        try:
            run.log_params(params)
        except BaseException as exc:
            run.abort(exc)
            raise
        return run

    @classmethod
    def attach(cls, uri: str, run_id: str) -> MlflowRun:
        """Continue an existing run (a resumed training): it is marked RUNNING again.

        A SQLite store that no longer exists is not created anew (the run is not there).
        """
        db_path = sqlite_db_path(uri)
        if db_path is not None and not db_path.is_file():
            raise MlflowException(f"the store {db_path} does not exist")
        client = open_client(uri)
        run = retry_locked(partial(client.get_run, run_id))
        retry_locked(partial(client.update_run, run_id, status="RUNNING"))
        return cls(client, run)

    @classmethod
    def read(cls, uri: str, run_id: str) -> MlflowRun:
        """An existing run, to read (its status unchanged)."""
        client = open_client(uri)
        return cls(client, retry_locked(partial(client.get_run, run_id)))

    def logged_steps(self) -> dict[str, int]:
        """The last step logged of each metric of this run (what a resumed run must not log again)."""
        run = retry_locked(partial(self._client.get_run, self.run_id))
        return {
            key: max(m.step for m in retry_locked(partial(self._client.get_metric_history, self.run_id, key)))
            for key in run.data.metrics
        }

    def logged_models(self) -> list[LoggedModel]:
        """The logged models this run produced."""
        found = retry_locked(
            partial(self._client.search_logged_models, [self._info.experiment_id],
                    filter_string=f"source_run_id = '{self.run_id}'")
        )
        return list(found)

    def fail_pending_models(self) -> None:
        """Mark FAILED the logged models a killed process left PENDING (half-written)."""
        for model in self.logged_models():
            if model.status == LoggedModelStatus.PENDING:
                retry_locked(partial(self._client.finalize_logged_model, model.model_id, LoggedModelStatus.FAILED))

    @property
    def run_id(self) -> str:
        return self._info.run_id

    @property
    def experiment_id(self) -> str:
        return self._info.experiment_id

    @property
    def artifact_uri(self) -> str:
        return self._info.artifact_uri

    def log_params(self, params: Mapping[str, object]) -> None:
        """Log params flattened to dotted keys, values stringified and truncated."""
        flat = _clean(flatten_params(params), MAX_PARAM_VAL_LENGTH)
        entities = [Param(key, value) for key, value in flat.items()]
        for chunk in _chunks(entities, MAX_PARAMS_TAGS_PER_BATCH):
            self._log_batch(params=chunk)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log one epoch's metrics in one batch; non-finite values are skipped with a warning."""
        values = {key: float(value) for key, value in metrics.items()}
        finite = {key: value for key, value in values.items() if math.isfinite(value)}
        if len(finite) < len(values):
            skipped = sorted(values.keys() - finite.keys())
            _logger.warning("step %d: not logging non-finite metrics %s", step, skipped)
        timestamp = int(time.time() * 1000)
        entities = [Metric(sanitize_key(k), v, timestamp, step) for k, v in finite.items()]
        for chunk in _chunks(entities, MAX_METRICS_PER_BATCH):
            self._log_batch(metrics=chunk)

    def log_dataset(self, name: str, digest: str, source: str, profile: Mapping[str, object]) -> None:
        """Record the training data as the run's dataset input (MLflow's Dataset column): its name, source,
        digest and a profile of counts."""
        dataset = Dataset(name=name, digest=digest, source_type="local", source=json.dumps({"uri": source}),
                          profile=json.dumps(dict(profile)))
        entry = DatasetInput(dataset, tags=[InputTag(key="mlflow.data.context", value="training")])
        retry_locked(partial(self._client.log_inputs, self.run_id, datasets=[entry]),
                     also_transient=(DATASET_RACE_MESSAGE,))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set run tags (keys sanitised, values truncated)."""
        entities = [RunTag(k, v) for k, v in _clean(tags, MAX_TAG_VAL_LENGTH).items()]
        for chunk in _chunks(entities, MAX_PARAMS_TAGS_PER_BATCH):
            self._log_batch(tags=chunk)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy one file into the run's artifacts (under `artifact_path` if given)."""
        retry_locked(partial(self._client.log_artifact, self.run_id, str(path), artifact_path))

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        """Copy a directory's contents into the run's artifacts (under `artifact_path` if given)."""
        retry_locked(
            partial(self._client.log_artifacts, self.run_id, str(directory), artifact_path)
        )

    def log_model(self, potential_file: str | Path, step: int) -> LoggedModel:
        """Log ``potential_file`` as this run's pyfunc model ``runs:/<run_id>/model`` (an MLflow
        LoggedModel, output of the run at ``step``).

        The model is READY once whole, FAILED if logging broke off.
        """
        from aenet_exp.tracking.pyfunc import MODEL_NAME, save_pyfunc  # the calculator, torch: only when logging

        create = partial(
            self._client.create_logged_model, self._info.experiment_id, name=MODEL_NAME, source_run_id=self.run_id
        )
        model = retry_locked(create)
        status = LoggedModelStatus.FAILED
        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / MODEL_NAME
                save_pyfunc(local, Path(potential_file), model)
                retry_locked(partial(self._client.log_model_artifacts, model.model_id, str(local)))
            output = LoggedModelOutput(model.model_id, step)
            retry_locked(partial(self._client.log_outputs, self.run_id, [output]))
            status = LoggedModelStatus.READY
        finally:
            retry_locked(partial(self._client.finalize_logged_model, model.model_id, status))
        return model

    def register_model(self, name: str, model: LoggedModel) -> int:
        """Register the logged ``model`` as a new version of ``name`` (created if missing).

        Tags the run with ``models:/<name>/<version>`` and returns the version.
        """
        try:
            retry_locked(partial(self._client.create_registered_model, name))
        except MlflowException as exc:
            if not _already_exists(exc):
                raise
        # The source is the model's artifact location, not models:/<model_id>: MLflow's SQL registry
        # would look that id up in the global tracking store rather than this client's.
        create = partial(
            self._client.create_model_version,
            name,
            model.artifact_location,
            run_id=self.run_id,
            model_id=model.model_id,
        )
        version = int(retry_locked(create).version)
        self.set_tags({REGISTERED_MODEL_TAG: f"models:/{name}/{version}"})
        return version

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Mark the run terminated; `reason` is recorded as a tag for FAILED and KILLED runs.

        Only the first call has an effect.
        """
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"status must be one of {TERMINAL_STATUSES}, got {status!r}")
        if self._finished:
            return
        if reason and status != "FINISHED":
            self.set_tags({FAILURE_REASON_TAG: reason})
        retry_locked(partial(self._client.set_terminated, self.run_id, status))
        self._finished = True

    def children(self) -> list[Run]:
        """The runs that name this one as their parent (the jobs of a sweep)."""
        return list(retry_locked(partial(
            self._client.search_runs, [self._info.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.run_id}'",
        )))

    def child_count(self) -> int:
        """How many runs name this one as their parent."""
        runs = retry_locked(
            partial(
                self._client.search_runs,
                [self._info.experiment_id],
                filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.run_id}'",
                max_results=1,
            )
        )
        return len(runs)

    def delete(self) -> None:
        """Remove the run (MLflow keeps it restorable until garbage collection)."""
        retry_locked(partial(self._client.delete_run, self.run_id))
        self._finished = True

    def __enter__(self) -> MlflowRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.finish()
        else:
            self.abort(exc)

    def abort(self, exc: BaseException) -> None:
        """Finish as KILLED on Ctrl-C or SIGTERM, FAILED otherwise, with the exception as the reason; an interruption
        gets a note saying so, for the line the command prints (:func:`aenet_exp.cli.common.stopped`)."""
        if self._finished:
            return
        interrupted = isinstance(exc, KeyboardInterrupt)
        self.finish("KILLED" if interrupted else "FAILED", reason=f"{type(exc).__name__}: {exc}")
        if interrupted:
            exc.add_note(f"the MLflow run {self.run_id} is marked KILLED")

    def _log_batch(self, **entities: Sequence[Metric | Param | RunTag]) -> None:
        retry_locked(partial(self._client.log_batch, self.run_id, **entities))


def open_client(uri: str) -> MlflowClient:
    """An MlflowClient for `uri` whose store exists and is migrated.

    A SQLite database (and its parent directory) is created, or migrated to this MLflow's schema,
    by one process at a time (:func:`store_lock`): jobs started together on a new store would
    otherwise race to create the same tables. Silences the SQLAlchemy deprecation warning that
    MLflow's SQL store emits on creation.
    """
    db_path = sqlite_db_path(uri)
    if db_path is not None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    with store_lock(db_path), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SQLALCHEMY_NOLOAD_WARNING)
        client = retry_locked(partial(MlflowClient, tracking_uri=uri))
        retry_locked(partial(client.search_experiments, max_results=1))  # creates and migrates the store now
    return client


@contextmanager
def store_lock(db_path: Path | None) -> Iterator[None]:
    """An exclusive lock on ``<database>.lock`` beside a SQLite store for the block (nothing for other stores)."""
    if db_path is None:
        yield
        return
    with open(db_path.with_name(db_path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def get_or_create_experiment(
    client: MlflowClient, name: str, artifact_location: str | None = None
) -> str:
    """Return the id of experiment `name`, creating it if missing (race-safe), marked as model training."""
    experiment = retry_locked(partial(client.get_experiment_by_name, name))
    if experiment is None:
        try:
            retry_locked(partial(client.create_experiment, name, artifact_location, tags=MODEL_TRAINING))
        except MlflowException as exc:
            if not _already_exists(exc):
                raise
        experiment = retry_locked(partial(client.get_experiment_by_name, name))
    if EXPERIMENT_KIND_TAG not in experiment.tags:  # made by an older aenet_exp, or by hand
        retry_locked(partial(client.set_experiment_tag, experiment.experiment_id, EXPERIMENT_KIND_TAG,
                             MODEL_TRAINING[EXPERIMENT_KIND_TAG]))
    return experiment.experiment_id


def _already_exists(exc: MlflowException) -> bool:
    """Whether ``exc`` says the entity to create exists already (another process made it first)."""
    return exc.error_code in (ErrorCode.Name(RESOURCE_ALREADY_EXISTS), ErrorCode.Name(ALREADY_EXISTS))


def sqlite_db_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the cwd), else None."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    path = uri[len(SQLITE_PREFIX) :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def default_artifact_location(uri: str) -> str | None:
    """``<db dir>/mlartifacts`` file URI for a SQLite store; None (MLflow's default) otherwise."""
    db_path = sqlite_db_path(uri)
    return None if db_path is None else (db_path.resolve().parent / "mlartifacts").as_uri()


def sanitize_key(key: str) -> str:
    """Make `key` a valid MLflow param, metric or tag name.

    Disallowed characters become ``_``; empty, ``.`` and ``..`` path segments are dropped,
    since MLflow rejects names that change under path normalisation.
    """
    cleaned = _INVALID_KEY_CHARS.sub("_", str(key))[:MAX_ENTITY_KEY_LENGTH]
    segments = [s for s in cleaned.split("/") if s not in ("", ".", "..")]
    return "/".join(segments) or "_"


def _clean(entries: Mapping[str, object], max_value_length: int) -> dict[str, str]:
    """Sanitised keys mapped to stringified values cut to `max_value_length`."""
    return {sanitize_key(k): str(v)[:max_value_length] for k, v in entries.items()}


def _chunks(items: Sequence[E], size: int) -> Iterator[Sequence[E]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
