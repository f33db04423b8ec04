"""The sweep's parent run: created and finished once, found by its jobs."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from aenet_exp.build.sweep import SweepParentCallback
from aenet_exp.tracking import (
    ROLE_TAG,
    SWEEP_DIR_TAG,
    MlflowRun,
    find_sweep_parent,
)
from aenet_exp.tracking.mlflow_run import (
    open_client,
)


def start(store: str, **kwargs: object) -> MlflowRun:
    arguments = {"experiment": "tests", "run_name": None, "params": {}, "tags": {}} | kwargs
    return MlflowRun.start(store, **arguments)


@pytest.fixture(scope="module")
def client(store: str) -> MlflowClient:
    return open_client(store)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URI of a fresh SQLite store in a nested (not yet existing) directory."""
    return f"sqlite:///{tmp_path_factory.mktemp('tracking')}/nested/mlflow.db"


def sweep_config(store: str, sweep_dir: str, enabled: bool = True) -> DictConfig:
    return OmegaConf.create(
        {
            "tracking": {"enabled": enabled, "uri": store, "experiment": "sweeps"},
            "hydra": {"sweep": {"dir": sweep_dir}},
        }
    )


def test_sweep_callback_creates_and_finishes_one_parent(store: str, client: MlflowClient) -> None:
    sweep_dir = "multirun/2024-05-01/12-00-00"
    config = sweep_config(store, sweep_dir)
    callback = SweepParentCallback()
    callback.on_multirun_start(config)
    parent_id = find_sweep_parent(store, "sweeps", sweep_dir)
    assert parent_id is not None
    with start(store, experiment="sweeps", parent_run_id=parent_id):
        pass
    callback.on_multirun_end(config)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "12-00-00"
    assert parent.data.tags[SWEEP_DIR_TAG] == sweep_dir
    assert parent.data.tags[ROLE_TAG] == "sweep"


def test_disabled_sweep_callback_does_nothing(store: str) -> None:
    config = sweep_config(store, "multirun/disabled", enabled=False)
    callback = SweepParentCallback()
    callback.on_multirun_start(config)
    callback.on_multirun_end(config)
    assert find_sweep_parent(store, "sweeps", "multirun/disabled") is None


@pytest.mark.parametrize("sweep_dir", ["it's here", 'say "hi"'])
def test_find_sweep_parent_handles_quotes(store: str, sweep_dir: str) -> None:
    tags = {SWEEP_DIR_TAG: sweep_dir, ROLE_TAG: "sweep"}
    with start(store, experiment="sweeps", tags=tags) as parent:
        assert find_sweep_parent(store, "sweeps", sweep_dir) == parent.run_id


def test_find_sweep_parent_without_experiment(store: str) -> None:
    assert find_sweep_parent(store, "no-such-experiment", "multirun/x") is None

