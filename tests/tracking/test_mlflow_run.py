"""MLflow runs against a real SQLite store (one per module: creating it takes seconds)."""

from __future__ import annotations

import math
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from aenet_exp.tracking import (
    FAILURE_REASON_TAG,
    MlflowRun,
)
from aenet_exp.tracking.mlflow_run import (
    default_artifact_location,
    get_or_create_experiment,
    open_client,
    sanitize_key,
    sqlite_db_path,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URI of a fresh SQLite store in a nested (not yet existing) directory."""
    return f"sqlite:///{tmp_path_factory.mktemp('tracking')}/nested/mlflow.db"


@pytest.fixture(scope="module")
def client(store: str) -> MlflowClient:
    return open_client(store)


def start(store: str, **kwargs: object) -> MlflowRun:
    arguments = {"experiment": "tests", "run_name": None, "params": {}, "tags": {}} | kwargs
    return MlflowRun.start(store, **arguments)


def test_store_directory_and_artifacts_live_beside_the_database(
    store: str, client: MlflowClient
) -> None:
    db_path = sqlite_db_path(store)
    assert db_path is not None and db_path.is_file()
    with start(store) as run:
        assert run.artifact_uri.startswith((db_path.parent / "mlartifacts").as_uri())
    assert client.get_run(run.run_id).info.status == "FINISHED"


def test_sqlite_uri_helpers() -> None:
    assert sqlite_db_path("sqlite:///outputs/mlflow.db") == Path("outputs/mlflow.db")
    assert sqlite_db_path("sqlite:////abs/mlflow.db?timeout=5") == Path("/abs/mlflow.db")
    assert sqlite_db_path("sqlite:///:memory:") is None
    assert sqlite_db_path("http://localhost:5000") is None
    assert default_artifact_location("http://localhost:5000") is None
    assert default_artifact_location("sqlite:////abs/mlflow.db") == "file:///abs/mlartifacts"


def test_many_params_are_flattened_batched_truncated_and_sanitised(
    store: str, client: MlflowClient
) -> None:
    params = {
        "layers": {f"l{i}": {"width": i, "activation": "tanh"} for i in range(80)},
        "long": "x" * 7000,
        "bad@key": [10, 10],
        "seed": None,
    }
    with start(store, params=params, run_name="params") as run:
        pass
    logged = client.get_run(run.run_id).data.params
    assert len(logged) == 163
    assert logged["layers.l79.width"] == "79"
    assert logged["layers.l3.activation"] == "tanh"
    assert logged["long"] == "x" * 6000
    assert logged["bad_key"] == "[10, 10]"
    assert logged["seed"] == "None"


def test_run_name_and_tags(store: str, client: MlflowClient) -> None:
    with start(store, run_name="named", tags={"aenet_exp.role": "train"}) as run:
        run.set_tags({"extra": "yes"})
    tags = client.get_run(run.run_id).data.tags
    assert tags["mlflow.runName"] == "named"
    assert tags["aenet_exp.role"] == "train"
    assert tags["extra"] == "yes"


def test_metrics_are_logged_per_step_and_non_finite_values_skipped(
    store: str, client: MlflowClient
) -> None:
    with start(store) as run:
        for epoch, rmse in enumerate([0.3, 0.2, 0.1]):
            run.log_metrics({"train/energy_rmse": rmse, "test/loss": float("nan")}, step=epoch)
        run.log_metrics({"train/force_rmse": math.inf}, step=3)
    history = client.get_metric_history(run.run_id, "train/energy_rmse")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 0.3),
        (1, 0.2),
        (2, 0.1),
    ]
    assert client.get_metric_history(run.run_id, "test/loss") == []
    assert client.get_metric_history(run.run_id, "train/force_rmse") == []


def test_artifacts_are_listed(store: str, client: MlflowClient, tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("weights")
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "curve.png").write_bytes(PNG_SIGNATURE)
    with start(store) as run:
        run.log_artifact(tmp_path / "model.txt")
        run.log_artifacts(plots, artifact_path="plots")
    assert {a.path for a in client.list_artifacts(run.run_id)} == {"model.txt", "plots"}
    assert [a.path for a in client.list_artifacts(run.run_id, "plots")] == ["plots/curve.png"]


def test_exception_in_context_marks_run_failed_with_reason(
    store: str, client: MlflowClient
) -> None:
    with pytest.raises(RuntimeError, match="diverged"), start(store) as run:
        raise RuntimeError("loss diverged")
    finished = client.get_run(run.run_id)
    assert finished.info.status == "FAILED"
    assert finished.data.tags[FAILURE_REASON_TAG] == "RuntimeError: loss diverged"


def test_finish_is_idempotent_and_validates_status(store: str, client: MlflowClient) -> None:
    run = start(store)
    with pytest.raises(ValueError, match="status"):
        run.finish("DONE")
    run.finish("KILLED", reason="preempted")
    run.finish("FINISHED")
    finished = client.get_run(run.run_id)
    assert finished.info.status == "KILLED"
    assert finished.data.tags[FAILURE_REASON_TAG] == "preempted"


def test_child_run_is_tagged_with_its_parent(store: str, client: MlflowClient) -> None:
    with start(store) as parent, start(store, parent_run_id=parent.run_id) as child:
        pass
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id


def test_concurrent_experiment_creation_yields_one_experiment(store: str) -> None:
    def create(_: int) -> str:
        return get_or_create_experiment(open_client(store), "raced")

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = set(pool.map(create, range(8)))
    assert len(ids) == 1


def test_sanitize_key() -> None:
    assert sanitize_key("train/energy_rmse") == "train/energy_rmse"
    assert sanitize_key("+a@b:c") == "_a_b_c"
    assert sanitize_key("/a//./b/../") == "a/b"
    assert sanitize_key("") == "_"


def test_a_dataset_logged_by_another_job_at_the_same_moment_is_reused(store: str, client: MlflowClient) -> None:
    """Jobs of one sweep log the same data at once. Here the other job holds the write lock with the dataset
    inserted but not committed while this run looks it up (and misses it), and commits once this run
    waits to insert it: the insert fails the unique key, and is retried to reuse the other job's row."""
    with start(store) as run:
        experiment_id = client.get_run(run.run_id).info.experiment_id
        other_job = sqlite3.connect(sqlite_db_path(store), isolation_level=None)
        other_job.execute("BEGIN IMMEDIATE")
        other_job.execute(
            "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type, dataset_source)"
            " VALUES ('other-job', ?, 'raced', 'abc123', 'local', '{}')", (experiment_id,))
        with ThreadPoolExecutor(1) as pool:
            logging = pool.submit(run.log_dataset, "raced", "abc123", "/data/train", {"structures": 3})
            time.sleep(1.5)  # this run has looked the dataset up and waits for the lock to insert it
            other_job.execute("COMMIT")
            other_job.close()
            logging.result()
    (logged,) = client.get_run(run.run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest) == ("raced", "abc123")
    assert client.get_run(run.run_id).info.status == "FINISHED"
