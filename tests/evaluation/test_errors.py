"""Pooled errors and their metrics (evaluation/errors.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aenet_exp.evaluation.errors import ErrorSums, metrics_of
from aenet_exp.evaluation.predictions import Predictions


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


def test_error_sums_pool_over_atoms_not_batches():
    sums = ErrorSums()
    sums.add(torch.tensor([1.0]), torch.ones(1, 3))
    sums.add(torch.tensor([0.0, 0.0, 0.0]), torch.zeros(3, 3))
    assert sums.energy_rmse() == pytest.approx(math.sqrt(1 / 4))  # a mean of batch RMSEs would give 0.5
    assert sums.force_rmse() == pytest.approx(math.sqrt(3 / 12))



def test_error_sums_are_the_float64_sums_of_each_batchs_float32_sums_to_the_bit():
    """The sums stay a tensor between batches (no host sync per batch) and read exactly what Python floats
    added batch by batch would hold."""
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(n, generator=generator), torch.randn(2 * n, 3, generator=generator) if n % 2 else None)
               for n in (5, 8, 3, 1, 7)]
    sums = ErrorSums()
    expected = [0.0, 0.0, 0.0, 0.0]
    for energy, force in batches:
        sums.add(energy, force)
        expected[0] += float(energy.square().sum())
        expected[1] += float(energy.abs().sum())
        if force is not None:
            expected[2] += float(force.square().sum())
            expected[3] += float(force.abs().sum())
    assert [sums.energy_sq, sums.energy_abs, sums.force_sq, sums.force_abs] == expected
    assert (sums.energy_n, sums.force_n) == (24, 2 * 3 * (5 + 3 + 1 + 7))
    assert sums.energy_rmse() == math.sqrt(expected[0] / 24)
