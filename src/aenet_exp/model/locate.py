"""Where a trained potential is: a run directory, an MLflow model directory, a model file, or ``runs:/<run_id>``.

``runs:/`` locations are downloaded from the MLflow store at ``tracking.uri`` (the argument), else
``MLFLOW_TRACKING_URI``, else the schema's default ``tracking.uri``; the store is only opened for them.
"""

from __future__ import annotations

import os
from pathlib import Path

from aenet_exp.config.schema import TRACKING_URI
from aenet_exp.errors import UserError, first_line
from aenet_exp.model.potential import Potential
from aenet_exp.rundir import MODEL_FILE

# Where a directory keeps the model: a run's output directory; an MLflow pyfunc model (runs:/<run_id>/model).
MODEL_FILE_IN_DIR = (MODEL_FILE, f"artifacts/{MODEL_FILE}")
RUNS_SCHEME = "runs:/"


class ModelNotFound(UserError, FileNotFoundError):
    """No model file at a location a user gave."""


def download_artifact(run_id: str, artifact_path: str, tracking_uri: str | None = None) -> Path:
    """Local path of ``artifact_path`` of run ``run_id`` in the store at ``tracking_uri`` (see the module): a file the
    run logged, or (``model[/...]``) the model it logged."""
    import mlflow  # seconds to import: only for runs:/ locations (the calculator and every command load this module)

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", TRACKING_URI)
    name, _, inside = artifact_path.partition("/")
    model = logged_model_location(mlflow.MlflowClient(uri), run_id, name)
    source = f"{model}/{inside}".rstrip("/") if model is not None else f"runs:/{run_id}/{artifact_path}"
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=uri))


def logged_model_location(client, run_id: str, name: str) -> str | None:
    """Where the model ``name`` that run ``run_id`` logged keeps its artifacts (None: the run logged no such model).
    Looked up here: MLflow's own ``runs:/`` lookup of a logged model reads the default store, not ``client``'s."""
    experiment = client.get_run(run_id).info.experiment_id
    found = f"name = '{name}' AND source_run_id = '{run_id}'"
    return next((m.artifact_location for m in client.search_logged_models([experiment], filter_string=found)), None)


def model_path(location: str | Path, tracking_uri: str | None = None) -> Path:
    """The model file behind ``location``: a run's output directory, an MLflow model directory, a model
    file, or ``runs:/<run_id>[/path]`` (``runs:/<run_id>`` is the run's ``potential.pt``, ``runs:/<run_id>/model``
    its pyfunc model) in the store at ``tracking_uri``."""
    text = str(location)
    path = Path(location)
    if text.startswith(RUNS_SCHEME):
        run_id, _, artifact = text.removeprefix(RUNS_SCHEME).strip("/").partition("/")
        try:
            path = download_artifact(run_id, artifact or MODEL_FILE, tracking_uri)
        except Exception as error:  # MLflow's errors for an unknown run, artifact or store
            raise ModelNotFound(f"{location}: {first_line(error)}") from None
    if path.is_dir():
        path = next((path / name for name in MODEL_FILE_IN_DIR if (path / name).is_file()), path / MODEL_FILE)
    if not path.is_file():
        raise ModelNotFound(
            f"{location}: no model file (expected a run or MLflow model directory with {MODEL_FILE}, or the file)"
        )
    return path


def load_potential(location: str | Path, tracking_uri: str | None = None, key: str | None = None) -> Potential:
    """The :class:`~aenet_exp.model.potential.Potential` at ``location``; a UserError naming ``key`` (the
    argument the user gave it as) when there is none or the file is not an aenet_exp model."""
    try:
        return Potential.load(model_path(location, tracking_uri))
    except UserError as error:
        if key is None:
            raise
        raise type(error)(f"{key}: {error}") from None
