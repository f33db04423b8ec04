"""Experiment tracking: MLflow runs, sweep parent runs, flattened params, plots, provenance.

The only package that imports mlflow; training drives it and it never reaches back. Names are
imported on first use: Hydra loads the sweep callback (:mod:`aenet_exp.build.sweep`) for every command, which
must not load mlflow.
"""

from aenet_exp.lazy import lazy_exports

_HOMES = {
    "FAILURE_REASON_TAG": "mlflow_run",
    "MlflowRun": "mlflow_run",
    "ROLE_TAG": "sweep",
    "SWEEP_DIR_TAG": "sweep",
    "find_sweep_parent": "sweep",
    "flatten_params": "flatten",
    "learning_curve_png": "plots",
    "parity_png": "plots",
    "project_git_commit": "git",
    "retry_locked": "retry",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_exports(__name__, _HOMES)
