"""A committee's uncertainty scores (evaluation/uncertainty.py): closed forms, calibrated and uncalibrated."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from aenet_exp.evaluation.predictions import Predictions
from aenet_exp.errors import AenetWarning
from aenet_exp.evaluation.uncertainty import (
    COVERAGE_LEVELS,
    MIN_HELD_OUT,
    check_held_out,
    gaussian_nll,
    miscalibration_area,
    rank_correlation,
    uncertainty_metrics,
)
from aenet_exp.model.calibration import Calibration, calibration_factor


def test_uncertainty_metrics_equal_their_closed_forms():
    errors, sigma = np.array([1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.5])
    assert calibration_factor(errors, sigma) == pytest.approx(math.sqrt(2.0), rel=1e-15)  # mean(e²/σ²) = (1+4+1)/3
    # a component zero by symmetry in every member (σ ~ 1e-6) with a DFT residual says nothing: it is left out
    symmetric = np.append(errors, 1.6e-3), np.append(sigma, 1e-6)
    assert calibration_factor(*symmetric) == pytest.approx(math.sqrt(2.0), rel=1e-15)
    assert gaussian_nll(*symmetric) == pytest.approx(gaussian_nll(errors, sigma), rel=1e-15)
    nll = np.mean([0.5 * math.log(2 * math.pi * s * s) + e * e / (2 * s * s) for e, s in zip(errors, sigma)])
    assert gaussian_nll(errors, sigma) == pytest.approx(nll, rel=1e-15)
    assert rank_correlation(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])) == pytest.approx(0.8)  # 1 − 6·2/60
    # ties share their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    tied = np.array([1.0, 2.5, 2.5, 4]) - 2.5
    assert rank_correlation(np.array([0.1, 0.5, 0.5, 0.9]), np.arange(4.0)) == pytest.approx(
        tied @ (np.arange(4.0) - 1.5) / math.sqrt((tied @ tied) * 5.0), rel=1e-15)
    # no error: every interval covers everything (area mean(1 − p) = 0.5); huge errors: nothing (mean(p) = 0.5)
    assert miscalibration_area(np.zeros(4), np.ones(4)) == pytest.approx(0.5)
    assert miscalibration_area(np.full(4, 1e9), np.ones(4)) == pytest.approx(0.5)
    # |z| = 0.1 and 3: half inside every interval wider than 0.1σ (p > erf(0.1/√2)), none reaches 3σ (p < 0.9973)
    inside_half = COVERAGE_LEVELS > math.erf(0.1 / math.sqrt(2))
    expected = np.mean(np.abs(np.where(inside_half, 0.5, 0.0) - COVERAGE_LEVELS))
    assert miscalibration_area(np.array([0.1, -3.0]), np.ones(2)) == pytest.approx(expected, rel=1e-15)


def test_uncalibrated_metrics_divide_sigma_by_the_factor():
    predictions = Predictions(
        indices=np.arange(4), energy_ref=np.array([0.0, 1.0, 2.0, 3.0]), energy_pred=np.array([0.3, 0.8, 2.9, 3.1]),
        n_atoms=np.array([1, 2, 1, 2]), energy_std=np.array([0.2, 0.4, 0.5, 0.1]),
    )
    metrics = uncertainty_metrics(predictions, "test", Calibration(2.0, 1.0))
    errors, sigma = np.array([0.3, -0.1, 0.9, 0.05]), np.array([0.2, 0.2, 0.5, 0.05])  # per atom
    assert metrics["test/energy_nll"] == pytest.approx(gaussian_nll(errors, sigma), rel=1e-12)
    assert metrics["test/energy_nll_uncalibrated"] == pytest.approx(gaussian_nll(errors, sigma / 2), rel=1e-12)
    assert metrics["test/energy_spearman"] == pytest.approx(rank_correlation(sigma, np.abs(errors)))
    assert not any(key.startswith("test/force") for key in metrics)


def held_out_predictions(n: int, sigma: float) -> Predictions:
    """``n`` one-atom structures, errors 0.1 eV, a committee's σ ``sigma`` eV on each."""
    return Predictions(indices=np.arange(n), energy_ref=np.zeros(n), energy_pred=np.full(n, 0.1), n_atoms=np.ones(n, int),
                       energy_std=np.full(n, sigma))


def test_members_that_agree_exactly_give_nan_scores_and_a_warning_not_numpy_warnings():
    identical = held_out_predictions(MIN_HELD_OUT, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        metrics = uncertainty_metrics(identical, "test", Calibration())
    assert math.isnan(metrics["test/energy_nll"]) and math.isnan(metrics["test/energy_miscalibration_area"])
    with pytest.warns(AenetWarning, match=r"^the committee's members agree exactly on the calibration structures \(σ = 0\)"):
        check_held_out(identical, "calibration")


@pytest.mark.parametrize("split", ["calibration", "test"])
def test_a_handful_of_held_out_structures_is_warned_about(split):
    assert MIN_HELD_OUT == 10
    with pytest.warns(AenetWarning, match=rf"^the {split} split has 9 structure\(s\), fewer than 10: the committee's"):
        check_held_out(held_out_predictions(9, 0.1), split)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_held_out(held_out_predictions(10, 0.1), split)
