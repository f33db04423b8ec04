"""sampling.* (training/sampling.py): which structures fill an epoch, by the reference's rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aenet_exp.training.sampling import EpochSampling, energy_weights, error_weights

from helpers import train


def test_energy_weights_are_the_references_rule():
    per_atom = np.array([-8.0, -7.5, -7.0, -8.0])  # Δ = 0, 0.5, 1, 0; Δmax = 1
    assert energy_weights(per_atom) == pytest.approx([1.0, 1 / 1.5, 0.5, 1.0])
    assert energy_weights(np.full(3, -5.0)).tolist() == [1.0, 1.0, 1.0]


def test_error_weights_have_unit_mean_and_survive_bad_errors():
    assert error_weights(np.array([0.1, 0.3, 0.2])) == pytest.approx([0.5, 1.5, 1.0])
    assert error_weights(np.array([0.2, np.nan, 0.4])) == pytest.approx([2 / 3, 1.0, 4 / 3])  # not drawn yet: the mean
    assert error_weights(np.array([0.0, -1.0, np.inf, 0.5]))[[0, 1]].tolist() == [0.0, 0.0]
    assert error_weights(np.zeros(4)).tolist() == [1.0] * 4  # all zero: uniform


def test_weighted_draws_follow_the_weights():
    train = np.arange(10, 20)
    per_atom = np.linspace(-8.0, -6.0, 30)
    sampling = EpochSampling("energy_weighted", train, per_atom, np.random.default_rng(3))
    counts = np.zeros(30)
    for _ in range(2000):
        order = sampling.epoch_order()
        assert len(order) == len(train) and set(order) <= set(train)
        np.add.at(counts, order, 1)
    expected = energy_weights(per_atom[train]) / energy_weights(per_atom[train]).sum() * counts.sum()
    assert np.abs(counts[train] - expected).max() < 4 * np.sqrt(expected.max())  # within 4 σ of the binomial
    again = EpochSampling("energy_weighted", train, per_atom, np.random.default_rng(3)).epoch_order()
    assert not np.array_equal(again, EpochSampling("energy_weighted", train, per_atom, np.random.default_rng(4)).epoch_order())


def test_error_weights_follow_the_errors_of_the_last_epoch():
    train = np.arange(4)
    sampling = EpochSampling("error_weighted", train, np.zeros(4), np.random.default_rng(0))
    sampling.epoch_order()
    assert sampling.weights.tolist() == [1.0] * 4  # epoch 0: uniform
    sampling.observe([0, 1, 1, 2], torch.tensor([0.1, -0.3, 0.5, 0.0]))
    metrics = sampling.end_epoch(torch.device("cpu"))
    sampling.epoch_order()
    errors = np.array([0.1, 0.4, 0.0, np.mean([0.1, 0.4, 0.0])])  # 1: mean of its two draws; 3: not drawn
    assert sampling.weights == pytest.approx(errors / errors.mean())
    assert metrics == {"sampling/weight_min": 1.0, "sampling/weight_max": 1.0, "sampling/weight_std": 0.0}
    sampling.observe([3], torch.tensor([0.8]))
    sampling.end_epoch(torch.device("cpu"))
    assert sampling.errors[[1, 3]] == pytest.approx([0.4, 0.8])  # 1 keeps its latest, 3 gets its first


@pytest.mark.parametrize("policy", ["energy_weighted", "error_weighted"])
def test_weighted_training_logs_the_spread_and_trains(fast_config, tmp_path, policy):
    metrics, rec = train(fast_config(f"sampling={policy}", "force=subsampled", "iterations=3", "precision=float64"),
                         tmp_path)
    assert np.isfinite(metrics["final/test/energy_rmse"])
    spread = [e["sampling/weight_max"] / e["sampling/weight_min"] for e in rec.epochs if e["sampling/weight_min"] > 0]
    if policy == "energy_weighted":
        assert all(1 < s <= 2 for s in spread)  # weights from 1 to 0.5
    else:
        assert rec.epochs[0]["sampling/weight_std"] == 0 and rec.epochs[-1]["sampling/weight_std"] > 0
