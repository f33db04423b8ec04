"""MLflow stores in temporary folders: a SQLite URI and the runs recorded there."""

from __future__ import annotations

from pathlib import Path


def store_uri(tmp_path: Path) -> str:
    """A SQLite MLflow store in ``tmp_path``."""
    return f"sqlite:///{tmp_path}/mlflow.db"


def runs_of(uri: str, experiment: str = "aenet_exp"):
    """A client of the store at ``uri`` and the runs of ``experiment`` there."""
    from mlflow.tracking import MlflowClient  # imported here: MLflow takes ~2 s to import, most tests read no store

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client, ([] if found is None else client.search_runs([found.experiment_id]))
