"""Sweeps beyond a grid: an Optuna search and submitit jobs recorded under one MLflow parent."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class
from omegaconf import OmegaConf

from helpers import FAST, run_cli, runs_of, store_uri

pytestmark = pytest.mark.slow


SEARCHED = {"optimizer.mu", "model.hidden.0", "model.hidden.1", "force.weight"}  # optimizer.batchsize is fixed by FAST


def sweep_runs(uri: str):
    """(client, parent, children) of the one sweep recorded at ``uri``."""
    client, runs = runs_of(uri)
    parents = [r for r in runs if r.data.tags.get("aenet_exp.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(runs) == len(children) + 1
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    return client, parents[0], children


def test_optuna_search_records_every_trial_and_the_best(tmp_path):
    uri, sweep_dir = store_uri(tmp_path), tmp_path / "search"
    widths_searched = [a for a in FAST if not a.startswith("model.")]  # the search sets the layer widths
    result = run_cli(
        "train", "-m", "hparams_search=tio2_optuna", "hydra.sweeper.n_trials=3", *widths_searched, "iterations=1",
        "optimized_metric=test/force_rmse", f"tracking.uri={uri}", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    _, parent, children = sweep_runs(uri)
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in [parent, *children])
    assert all(r.data.params["force.fraction"] == "0.3" for r in children)  # the search trains forces
    assert len({r.data.params["optimizer.mu"] for r in children}) == 3
    assert all(1e-4 <= float(r.data.params["optimizer.mu"]) <= 1e-2 for r in children)

    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    values = [r.data.metrics["final/test/force_rmse"] for r in children]
    assert results.best_value == pytest.approx(min(values), rel=1e-12)
    assert results.best_value != pytest.approx(min(r.data.metrics["final/test/energy_rmse"] for r in children))
    best = children[values.index(min(values))].data.params
    assert set(results.best_params) == SEARCHED
    assert best["optimizer.mu"] == str(results.best_params["optimizer.mu"])
    assert best["model.hidden"] == f"[{results.best_params['model.hidden.0']}, {results.best_params['model.hidden.1']}]"


def test_sweep_job_without_the_optimized_metric_fails_naming_it(tmp_path):
    uri = store_uri(tmp_path)
    result = run_cli("train", "-m", *FAST, "iterations=1", "data.testpercent=0", "seed=1,2", f"tracking.uri={uri}",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "aenet_exp: error: optimized_metric: this job produced no test/energy_rmse" in result.stderr
    assert "'train/energy_rmse'" in result.stderr and "Traceback" not in result.stderr
    _, parent, children = sweep_runs(uri)
    assert len(children) == 1 and parent.info.status == "FAILED"  # the sweep stopped at its first job


def test_submitit_jobs_are_children_of_one_parent(tmp_path):
    """The SLURM launcher's plugin, with its local executor: each job a separate submitted process."""
    uri, sweep_dir = store_uri(tmp_path), tmp_path / "sweep"
    result = run_cli(
        "train", "-m", "hydra/launcher=submitit_local", "seed=1,2", *FAST, "iterations=1", f"tracking.uri={uri}",
        f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    client, parent, children = sweep_runs(uri)
    assert sorted(r.data.params["seed"] for r in children) == ["1", "2"]
    assert all(r.info.status == "FINISHED" for r in [parent, *children])
    assert all([m.step for m in client.get_metric_history(r.info.run_id, "train/loss")] == [1] for r in children)
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) == 2  # submitit ran the jobs


def test_slurm_launcher_config():
    GlobalHydra.instance().clear()
    with initialize_config_module("aenet_exp.conf", version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"
    assert (launcher.partition, launcher.nodes, launcher.tasks_per_node, launcher.cpus_per_task) == ("gpu", 1, 1, 4)

