"""Fixtures shared by the tests; the helpers they use live in the ``helpers`` package (tests/helpers)."""

from __future__ import annotations

import os
from pathlib import Path

# One torch thread in this process and in every CLI subprocess (they inherit the environment), unless the
# environment says otherwise: the tests' tensors are tiny, and on a machine with few cores, shared by the test
# process, its subprocesses and other jobs, torch's thread pool waits on busy cores (a repeat_interleave of
# 100 elements took 3-20 ms with 2 threads, 0.02 ms with 1). Results within a run do not depend on it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from helpers import DATA, FAST, CliRun, compose_train, run_cli, store_uri  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # also where torch was imported before this file


MAX_WORKERS = 8  # each worker holds torch and MLflow (~0.5 GB) and makes the session fixtures it needs again


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core this process may run on, at most MAX_WORKERS (pytest-xdist's own count is
    psutil's physical cores where psutil is installed, 1 on a VM with 2 hyper-threads)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, MAX_WORKERS)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture
def fast_config():
    """Compose a quick-training config; extra overrides win over the fast ones."""

    def make(*overrides: str) -> DictConfig:
        return compose_train(*FAST, "tracking.enabled=false", *overrides)

    return make


@pytest.fixture(scope="session")
def recorded_cli_run(tmp_path_factory) -> CliRun:
    """One training through the CLI into ``run`` and a SQLite store: forces subsampled, 3 epochs, predictions and
    timings saved, its model registered as ``tio2_cli``. Each test reading it checks one side of that run."""
    cwd = tmp_path_factory.mktemp("cli-run")
    uri = store_uri(cwd)
    result = run_cli(
        "train", *FAST, f"tracking.uri={uri}", "force=subsampled", "force.fraction=0.5", "iterations=3",
        "tracking.save_energies=true", "tracking.save_forces=true", "tracking.timing=true",
        "tracking.register=tio2_cli", "hydra.run.dir=run", cwd=cwd,
    )
    return CliRun(result, uri, cwd)


@pytest.fixture(scope="session")
def grid_sweep(tmp_path_factory) -> CliRun:
    """One Hydra multirun through the CLI: a 2 × 2 grid over optimizer.mu and force.weight, 2 epochs each, recorded
    in one SQLite store. Each test reading it checks one side of that sweep."""
    cwd = tmp_path_factory.mktemp("grid-sweep")
    uri = store_uri(cwd)
    result = run_cli("train", "-m", *FAST, f"tracking.uri={uri}", "iterations=2", "optimizer.mu=1e-3,3e-3",
                     "force.weight=0.1,0.3", cwd=cwd, timeout=600)
    return CliRun(result, uri, cwd)
