"""Learning-rate schedules, early stopping, weight averaging, the extra metrics, an external test set, experiments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aenet_exp.config.validation import ConfigError, validate
from aenet_exp.model import Potential
from aenet_exp.training.events import Predictions
from aenet_exp.model.potential import MODEL_FILE
from aenet_exp.training.metrics import metrics_of
from aenet_exp.training.schedule import WeightAverage
from conftest import DATA, SMALL, compose_train, run_cli
from test_training import train

F64 = ("precision=float64",)


def lrs(recorder) -> list[float]:
    return [epoch["train/lr"] for epoch in recorder.epochs]


def test_cosine_schedule_with_warmup_follows_the_formula(fast_config, tmp_path):
    _, rec = train(fast_config("scheduler=cosine", "scheduler.warmup_epochs=2", "scheduler.warmup_start_factor=0.1",
                               "scheduler.min_lr=1e-5", "optimizer.mu=1e-3", "iterations=6"), tmp_path)
    top, low = 1e-3, 1e-5
    cosine = [low + (top - low) * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(1, 4)]
    assert lrs(rec) == pytest.approx([1e-4, 5.5e-4, 1e-3, *cosine], rel=1e-9)


def test_plateau_schedule_reduces_when_the_metric_stalls(fast_config, tmp_path):
    # A relative threshold of 0.99 counts no epoch after the first as an improvement.
    _, rec = train(fast_config("scheduler=plateau", "scheduler.patience=0", "scheduler.threshold=0.99",
                               "scheduler.factor=0.5", "scheduler.min_lr=0", "optimizer.mu=1e-3", "iterations=4"), tmp_path)
    assert lrs(rec) == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])


def test_early_stopping_stops_and_keeps_the_best_model(fast_config, tmp_path):
    metrics, rec = train(fast_config(*F64, "iterations=10", "early_stopping.patience=2", "early_stopping.min_delta=1e9",
                                     "early_stopping.metric=test/energy_rmse"), tmp_path)
    assert len(rec.epochs) == 3  # epoch 1 is the best; two epochs without improvement stop the run
    assert metrics["final/best_epoch"] == 1
    assert metrics["final/test/energy_rmse"] == pytest.approx(rec.epochs[0]["test/energy_rmse"], rel=1e-10)
    assert metrics["final/test/energy_rmse"] != pytest.approx(rec.epochs[-1]["test/energy_rmse"], rel=1e-6)


def test_watched_metrics_must_exist_in_the_run(fast_config, tmp_path):
    with pytest.raises(ConfigError, match="^early_stopping.metric: watches test/loss, but this run has no test"):
        train(fast_config("early_stopping.patience=2", "data.testpercent=0"), tmp_path)
    with pytest.raises(ConfigError, match="^scheduler.metric: watches train/force_rmse, but forces are not trained"):
        train(fast_config("scheduler=plateau", "scheduler.metric=train/force_rmse"), tmp_path)
    with pytest.raises(ConfigError, match="^scheduler.metric: expected one of"):
        validate(fast_config("scheduler=plateau", "scheduler.metric=test/accuracy"))
    with pytest.raises(ConfigError, match=r"^ema.decay: expected a decay in \(0, 1\)"):
        validate(fast_config("ema.decay=1.0"))


def test_weight_average_is_an_exponential_moving_average():
    model = torch.nn.Linear(1, 1, bias=False).double()
    average = WeightAverage(model, decay=0.75)
    expected = None
    for value in (1.0, 3.0, -2.0):
        model.weight.data.fill_(value)
        average.update()
        expected = value if expected is None else 0.75 * expected + 0.25 * value
    assert average.weights()["weight"].item() == pytest.approx(expected, rel=1e-14)
    with average.applied():
        assert model.weight.item() == pytest.approx(expected, rel=1e-14)
    assert model.weight.item() == -2.0


def test_ema_weights_are_evaluated_and_saved(fast_config, tmp_path):
    from aenet_exp.training.checkpoint import load_checkpoint

    metrics, rec = train(fast_config(*F64, "ema.decay=0.5", "iterations=3", "force=full"), tmp_path)
    saved = Potential.load(tmp_path / MODEL_FILE)
    raw = load_checkpoint(tmp_path)["model"]
    averaged = dict(saved.state_dict())
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw if "networks" in k)
    assert metrics["final/test/energy_rmse"] == pytest.approx(rec.epochs[-1]["test/energy_rmse"], rel=1e-10)


def test_metrics_in_both_force_conventions_and_mae():
    predictions = Predictions(
        indices=np.arange(2), energy_ref=np.array([0.0, 0.0]), energy_pred=np.array([0.3, -0.4]),
        n_atoms=np.array([1, 2]),
        force_ref=[np.zeros((1, 3)), np.zeros((2, 3))],
        force_pred=[np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 2.0, 0.0], [0.0, 0.0, -2.0]])],
    )
    metrics = metrics_of(predictions, "test")
    assert metrics["test/energy_rmse"] == pytest.approx(math.sqrt((0.09 + 0.04) / 2))
    assert metrics["test/energy_mae"] == pytest.approx((0.3 + 0.2) / 2)
    assert metrics["test/force_rmse"] == pytest.approx(math.sqrt(9 / 9))
    assert metrics["test/force_rmse_vector"] == pytest.approx(math.sqrt((1 + 4 + 4) / 3))  # RMS of |ΔF| per atom
    assert metrics["test/force_mae"] == pytest.approx(5 / 9)


def test_external_test_set(fast_config, tmp_path):
    test_file = DATA / "tio2" / sorted(p.name for p in (DATA / "tio2").glob("*.xsf"))[0]
    metrics, rec = train(fast_config(f"data.test_path={test_file}", "data.testpercent=0"), tmp_path)
    assert rec.facts["dataset.train_structures"] == 16 and rec.facts["dataset.test_structures"] == 1
    assert "final/test/energy_rmse" in metrics
    with pytest.raises(ConfigError, match="^data.testpercent: is 25.0, but data.test_path gives the test set"):
        validate(fast_config(f"data.test_path={test_file}"))


# The experiments, on the small fixtures in tests/data instead of the shared data folder (CI has none).
EXPERIMENT_DATA = {
    "tio2_published": [f"data.path={SMALL}", "data.testpercent=25"],
    "tio2_fast": [f"data.path={SMALL}", "data.testpercent=25"],
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


def test_fast_experiment_through_the_cli(tmp_path):
    result = run_cli("train", "experiment=tio2_fast", *EXPERIMENT_DATA["tio2_fast"], "iterations=2",
                     f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path}/run",
                     "tracking.show_progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "final/test/force_rmse_vector" in result.stdout
    assert (tmp_path / "run" / MODEL_FILE).is_file()
