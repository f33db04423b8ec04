"""The MLflow observer of a training (tracking/observer.py): each step logged once across resumes, failures of
the store told in one line with the checkpoint kept, runs never left RUNNING or half-logged."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from mlflow.entities import LoggedModelStatus
from omegaconf import OmegaConf

from aenet_exp.build.training import run_training
from aenet_exp.rundir import RUN_ID_FILE
from aenet_exp.tracking.mlflow_run import open_client
from aenet_exp.tracking.observer import MlflowObserver, TrackingUnavailable, recorded_run_id
from aenet_exp.training.checkpoint import load_checkpoint
from aenet_exp.training.events import Callback

from helpers import FAST, compose_train, runs_of, store_uri

PER_EPOCH = ("train/loss", "train/energy_rmse", "test/energy_rmse", "time/epoch_s")


def tracked(tmp_path, run_dir, *overrides, resume=False):
    """Run a training recorded by the observer as the CLI builds it; returns its metrics."""
    uri = store_uri(tmp_path)
    if resume:
        cfg = compose_train(f"resume={run_dir}", *overrides)
        tracking = OmegaConf.create(load_checkpoint(run_dir)["config"]).tracking
        observer = MlflowObserver(OmegaConf.to_container(tracking), run_dir=run_dir, resume_run_id=recorded_run_id(run_dir))
    else:
        cfg = compose_train(*FAST, f"tracking.uri={uri}", *overrides)
        observer = MlflowObserver(OmegaConf.to_container(cfg.tracking), run_dir=run_dir)
    return run_training(cfg, run_dir, [observer])


def steps(uri: str, run_id: str, key: str) -> list[int]:
    return [m.step for m in open_client(uri).get_metric_history(run_id, key)]


def test_resuming_a_finished_run_logs_final_metrics_and_the_model_once(tmp_path):
    run_dir = tmp_path / "run"
    tracked(tmp_path, run_dir, "iterations=2")
    tracked(tmp_path, run_dir, "iterations=2", resume=True)
    client, runs = runs_of(store_uri(tmp_path))
    run_id = runs[0].info.run_id
    for key in ("final/test/energy_rmse", "train/loss"):
        assert len(steps(store_uri(tmp_path), run_id, key)) == (1 if key.startswith("final/") else 2), key
    models = client.search_logged_models([runs[0].info.experiment_id])
    assert [m.status for m in models] == [LoggedModelStatus.READY]


def test_a_half_logged_model_of_a_killed_end_is_failed_on_resume(tmp_path):
    run_dir = tmp_path / "run"
    tracked(tmp_path, run_dir, "iterations=2", "tracking.log_model=false")
    client, runs = runs_of(store_uri(tmp_path))
    pending = client.create_logged_model(runs[0].info.experiment_id, name="model", source_run_id=runs[0].info.run_id)
    tracked(tmp_path, run_dir, "iterations=3", resume=True)
    assert client.get_logged_model(pending.model_id).status == LoggedModelStatus.FAILED
    assert steps(store_uri(tmp_path), runs[0].info.run_id, "train/loss") == [1, 2, 3]


class BreakStore(Callback):
    """Removes the MLflow store after epoch ``epoch`` (1-based), as a failing disk or a cleaner would."""

    def __init__(self, store, epoch: int):
        self.store, self.epoch = store, epoch

    def on_epoch_end(self, epoch, metrics):
        if epoch + 1 == self.epoch:
            shutil.rmtree(self.store)


def test_a_store_failing_mid_run_is_one_line_and_keeps_the_checkpoint(tmp_path):
    uri = store_uri(tmp_path / "store")
    cfg = compose_train(*FAST, f"tracking.uri={uri}", "iterations=6", "checkpoint.every=10", "tracking.log_model=false")
    observer = MlflowObserver(OmegaConf.to_container(cfg.tracking), run_dir=tmp_path / "run")
    with pytest.raises(TrackingUnavailable) as failed:
        run_training(cfg, tmp_path / "run", [observer, BreakStore(tmp_path / "store", 3)])
    message = str(failed.value)
    assert message.startswith("tracking.uri: the MLflow store at ") and "failed at epoch 4" in message
    assert "\n" not in message and f"resume={tmp_path / 'run'}" in message
    assert load_checkpoint(tmp_path / "run")["epoch"] == 3  # the last epoch logged, though no checkpoint was due
    with pytest.raises(TrackingUnavailable, match=f"cannot be continued .*tracking.enabled=false.*{RUN_ID_FILE}"):
        tracked(tmp_path, tmp_path / "run", "iterations=6", resume=True)
    assert not (tmp_path / "store").exists()  # no empty store made up
    metrics = run_training(compose_train(f"resume={tmp_path / 'run'}", "iterations=6", "tracking.enabled=false"), tmp_path / "x")
    assert "final/test/energy_rmse" in metrics


def start(args: list[str], cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aenet_exp", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def logged_steps(uri: str, run_dir) -> list[int]:
    run_id = recorded_run_id(run_dir)
    return steps(uri, run_id, "train/loss") if run_id else []


@pytest.mark.slow
def test_killed_and_resumed_run_logs_every_step_exactly_once(tmp_path):
    """kill -9 after the checkpoint of epoch 4, with epochs 5 and 6 logged: the resumed run relogs nothing."""
    uri = store_uri(tmp_path)
    process = start(["train", *FAST, f"tracking.uri={uri}", "iterations=40", "checkpoint.every=4", "hydra.run.dir=run"],
                    tmp_path)
    wait_for(lambda: len(logged_steps(uri, tmp_path / "run")) >= 6)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    _, runs = runs_of(uri)
    assert runs[0].info.status == "RUNNING"  # what a dead process leaves
    resumed = subprocess.run([sys.executable, "-m", "aenet_exp", "train", "resume=run", "iterations=40"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    client, runs = runs_of(uri)
    assert runs[0].info.status == "FINISHED"
    for key in PER_EPOCH:
        assert steps(uri, runs[0].info.run_id, key) == list(range(1, 41)), key
    assert len(steps(uri, runs[0].info.run_id, "final/train/energy_rmse")) == 1


@pytest.mark.slow
def test_sigterm_marks_the_run_killed_keeps_its_epochs_and_resumes(tmp_path):
    uri = store_uri(tmp_path)
    process = start(["train", *FAST, f"tracking.uri={uri}", "iterations=400", "checkpoint.every=1000",
                     "hydra.run.dir=run"], tmp_path)
    wait_for(lambda: len(logged_steps(uri, tmp_path / "run")) >= 3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert err.startswith("aenet_exp: interrupted (terminated by signal SIGTERM)") and err.count("\n") == 1, err
    _, runs = runs_of(uri)
    assert runs[0].info.status == "KILLED"
    checkpointed = load_checkpoint(tmp_path / "run")["epoch"]
    assert checkpointed >= 3  # the last finished epoch, though checkpoint.every is 1000
    resumed = subprocess.run([sys.executable, "-m", "aenet_exp", "train", "resume=run", f"iterations={checkpointed + 2}"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    _, runs = runs_of(uri)
    assert runs[0].info.status == "FINISHED"
    assert steps(uri, runs[0].info.run_id, "train/loss") == list(range(1, checkpointed + 3))
