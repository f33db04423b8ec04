"""Experiment tracking: MLflow runs, sweep parent runs, flattened params, plots, provenance.

The only package that imports mlflow; training drives it and it never reaches back.
"""

from __future__ import annotations

from aenet_exp.tracking.flatten import flatten_params
from aenet_exp.tracking.git import project_git_commit
from aenet_exp.tracking.mlflow_run import FAILURE_REASON_TAG, MlflowRun
from aenet_exp.tracking.plots import learning_curve_png, parity_png
from aenet_exp.tracking.retry import retry_locked
from aenet_exp.tracking.sweep import (
    ROLE_TAG,
    SWEEP_DIR_TAG,
    SweepParentCallback,
    find_sweep_parent,
)

__all__ = [
    "FAILURE_REASON_TAG",
    "ROLE_TAG",
    "SWEEP_DIR_TAG",
    "MlflowRun",
    "SweepParentCallback",
    "find_sweep_parent",
    "flatten_params",
    "learning_curve_png",
    "parity_png",
    "project_git_commit",
    "retry_locked",
]
