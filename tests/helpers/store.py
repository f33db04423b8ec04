"""MLflow stores in temporary folders: a SQLite URI and the runs recorded there."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path


@cache
def _empty_store() -> Path:
    """One SQLite store of this test process with MLflow's tables created (the schema migrations take ~0.7 s a
    store; a copy of the file 2 ms), removed when the process ends."""
    from mlflow.tracking import MlflowClient  # imported here: MLflow takes ~2 s to import, most tests read no store

    folder = Path(tempfile.mkdtemp(prefix="aenet-empty-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    MlflowClient(f"sqlite:///{folder}/mlflow.db").search_experiments()  # creates and migrates the tables
    return folder / "mlflow.db"


def store_uri(tmp_path: Path, made: bool = True) -> str:
    """A SQLite MLflow store in ``tmp_path``: an empty store with its tables already made unless one is there, or,
    with ``made=False``, the URI only (for tests that check when a command creates its store)."""
    database = Path(tmp_path) / "mlflow.db"
    if made and not database.exists():
        Path(tmp_path).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_store(), database)
    return f"sqlite:///{database}"


def runs_of(uri: str, experiment: str = "aenet_exp"):
    """A client of the store at ``uri`` and the runs of ``experiment`` there."""
    from mlflow.tracking import MlflowClient  # imported here: MLflow takes ~2 s to import, most tests read no store

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client, ([] if found is None else client.search_runs([found.experiment_id]))
