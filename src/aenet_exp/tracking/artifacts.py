"""Fetching run artifacts (a trained model) from an MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow


def download_artifact(run_id: str, artifact_path: str, tracking_uri: str | None = None) -> Path:
    """Local path of ``artifact_path`` of run ``run_id`` (tracking URI: argument, ``MLFLOW_TRACKING_URI``, or
    the project default ``sqlite:///outputs/mlflow.db``)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///outputs/mlflow.db")
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, tracking_uri=uri)
    return Path(local)
