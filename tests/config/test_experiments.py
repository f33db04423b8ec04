"""The experiments (conf/experiment): each composes, validates and trains on the small fixtures."""

from __future__ import annotations

import math

import pytest

from aenet_exp.config.validation import validate
from aenet_exp.model.potential import MODEL_FILE

from helpers import DATA, SMALL, compose_train, run_cli, train

E_ATOMIC_OVERRIDE = "{O: -432.503149303, Ti: -1604.604515075}"  # data.path names new data: its references too

# The experiments, on the small fixtures in tests/data instead of the shared data folder (CI has none).
EXPERIMENT_DATA = {
    "tio2_published": [f"data.path={SMALL}", "data.testpercent=25", f"data.E_atomic={E_ATOMIC_OVERRIDE}"],
    "tio2_fast": [f"data.path={SMALL}", "data.testpercent=25", f"data.E_atomic={E_ATOMIC_OVERRIDE}"],
    "ethanol": [f"data.path={DATA / 'ethanol' / 'ethanol5.xyz'}", f"data.test_path={DATA / 'ethanol' / 'ethanol5.xyz'}",
                f"normalization.E_atomic={DATA / 'ethanol' / 'isolated_atoms.xyz'}"],
}


@pytest.mark.parametrize("name", sorted(EXPERIMENT_DATA))
def test_experiments_compose_validate_and_train(name, tmp_path):
    cfg = compose_train(f"experiment={name}", *EXPERIMENT_DATA[name], "iterations=2", "tracking.enabled=false",
                        "tracking.show_progress=false")
    validate(cfg)
    metrics, rec = train(cfg, tmp_path)
    assert len(rec.epochs) == 2 and math.isfinite(metrics["final/test/energy_rmse"])


def test_published_experiment_is_the_published_setup():
    cfg = compose_train("experiment=tio2_published")
    assert cfg.data.path.endswith("tio2-1000/dir_xsf.tar.gz") and cfg.data.testpercent == 10
    d = cfg.descriptor
    assert (d.rad_order, d.rad_cutoff, d.ang_order, d.ang_cutoff) == (20, 6.5, 6, 5.0)
    assert list(cfg.model.hidden) == [5, 5] and list(cfg.model.activations) == ["tanh", "tanh"]
    o = cfg.optimizer
    assert (o.name, o.mu, o.weight_decay, o.batchsize) == ("adamw", 1e-4, 1e-3, 128)
    assert (cfg.force.weight, cfg.force.fraction, cfg.force.sampling) == (0.1, 0.25, "fixed")
    assert cfg.iterations == 10000 and cfg.scheduler.name == "none" and cfg.ema.decay is None


@pytest.mark.slow
def test_fast_experiment_through_the_cli(tmp_path):
    result = run_cli("train", "experiment=tio2_fast", *EXPERIMENT_DATA["tio2_fast"], "iterations=2",
                     f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path}/run",
                     "tracking.show_progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "|ΔF| RMSE" in result.stdout and "done: errors of the final model" in result.stdout
    assert (tmp_path / "run" / MODEL_FILE).is_file()

