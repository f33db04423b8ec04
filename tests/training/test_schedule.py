"""Learning-rate schedules and the moving average of the weights (training/schedule.py)."""

from __future__ import annotations

import math

import pytest
import torch

from aenet_exp.model import Potential
from aenet_exp.model.potential import MODEL_FILE
from aenet_exp.training.schedule import WeightAverage

from helpers import train

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

