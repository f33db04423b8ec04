"""How good a committee's uncertainty is: closed forms on errors and standard deviations, and the calibration of a
potential on held-out structures.

Every score takes the errors ``e`` of the committee's mean prediction and its standard deviations ``σ``
(arrays of the same shape, same unit) of one quantity: energies per atom (one entry per structure) or
force components (one per atom and direction). Entries whose σ is (near) zero are left out of the scores
(:func:`~aenet_exp.model.calibration.usable`, as out of the calibration's fit); the rank correlation takes every
entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np

from aenet_exp.errors import warn
from aenet_exp.evaluation.predictions import Predictions
from aenet_exp.model.calibration import Calibration, usable
from aenet_exp.model.potential import Potential

# Central intervals whose coverage the miscalibration area compares: expected fractions 0.01, 0.02, ..., 0.99.
COVERAGE_LEVELS = np.linspace(0.01, 0.99, 99)
# Held-out structures below which a calibration factor or a test score of σ is noise: a likelihood fit on n errors
# has a relative standard error of about 1/√(2n) (over 20 % below 10), and Spearman's ρ of a few points is anything.
MIN_HELD_OUT = 10


def gaussian_nll(errors: np.ndarray, sigma: np.ndarray) -> float:
    """Mean negative log-likelihood of ``errors`` under centred Gaussians of width ``σ``:
    ``mean(½ log(2πσ²) + e²/(2σ²))`` (nats; lower is better; depends on the unit of ``e`` and ``σ``)."""
    errors, sigma = usable(errors, sigma)
    if not len(errors):
        return math.nan
    return float(np.mean(0.5 * np.log(2 * np.pi * sigma**2) + errors**2 / (2 * sigma**2)))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` ``(n,)``, tied values sharing their ranks' mean."""
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(1, len(values) + 1)
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=ranks) / counts)[group]


def rank_correlation(sigma: np.ndarray, magnitudes: np.ndarray) -> float:
    """Spearman's ρ between predicted ``σ`` and actual error magnitudes (1: the larger σ, the larger the error):
    the correlation of their ranks; NaN when either is constant or there are fewer than two."""
    if len(sigma) < 2:
        return math.nan
    a, b = average_ranks(np.ravel(sigma)), average_ranks(np.ravel(magnitudes))
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / norm if norm > 0 else math.nan


def observed_coverage(errors: np.ndarray, sigma: np.ndarray, levels: np.ndarray = COVERAGE_LEVELS) -> np.ndarray:
    """For each expected fraction ``p``, the fraction of errors inside the central Gaussian interval
    ``|e| ≤ z_p·σ``, ``z_p = Φ⁻¹((1 + p)/2) = √2·erfinv(p)``; NaN without usable entries."""
    errors, sigma = usable(errors, sigma)
    if not len(errors):
        return np.full(len(levels), math.nan)
    z = np.abs(errors / sigma)
    standard = NormalDist()
    return np.array([np.mean(z <= standard.inv_cdf((1 + p) / 2)) for p in levels])


def miscalibration_area(errors: np.ndarray, sigma: np.ndarray, levels: np.ndarray = COVERAGE_LEVELS) -> float:
    """Mean |observed − expected| coverage over ``levels`` (0: calibrated; at most 0.5)."""
    return float(np.mean(np.abs(observed_coverage(errors, sigma, levels) - levels)))


def per_atom(components: np.ndarray) -> np.ndarray:
    """``(n_atoms·3,)`` components -> ``(n_atoms,)`` vector lengths."""
    return np.linalg.norm(components.reshape(-1, 3), axis=1)


def calibrate(potential: Potential, predict_held_out: Callable[[], Predictions]) -> Calibration:
    """Fit ``potential``'s calibration on the predictions ``predict_held_out`` makes of held-out structures with σ as the
    members give it, and keep it on the potential (:attr:`Potential.calibration`); returns it."""
    potential.calibration = Calibration()
    held_out = predict_held_out()
    check_held_out(held_out, "calibration")
    fitted = Calibration.fit(held_out)
    potential.calibration = fitted
    return fitted


def check_held_out(predictions: Predictions, split: str) -> None:
    """Warn when a committee's ``predictions`` of its ``split`` (calibration or test structures) are too few to judge
    its σ by (:data:`MIN_HELD_OUT`), or when its members agree exactly there (σ = 0: nothing to calibrate or score)."""
    errors, sigma = predictions.energy_errors()
    judged = "calibration factors are" if split == "calibration" else "σ scores (NLL, Spearman ρ, miscalibration) are"
    if len(errors) < MIN_HELD_OUT:
        warn(f"the {split} split has {len(errors)} structure(s), fewer than {MIN_HELD_OUT}: the committee's {judged} "
             "rough; hold out more structures")
    if len(errors) and not len(usable(errors, sigma)[0]):
        kept = " (factors of 1 kept)" if split == "calibration" else ""
        warn(f"the committee's members agree exactly on the {split} structures (σ = 0): its {judged} meaningless"
             f"{kept}; train its members from distinct seeds")


def uncertainty_metrics(predictions: Predictions, prefix: str, calibration: Calibration) -> dict[str, float]:
    """NLL, Spearman ρ and miscalibration area of the energies per atom (per structure) and, with forces, of the
    force components (ρ per atom, between |σ_F| and |ΔF|): with the calibrated σ of ``predictions`` and, named
    ``..._uncalibrated``, with σ divided by the factors of the ``calibration`` it was made with."""
    metrics = {}
    quantities = {"energy": predictions.energy_errors()}
    if predictions.force_components()[0].size:
        quantities["force"] = predictions.force_errors()
    for name, (errors, sigma) in quantities.items():
        for suffix, scaled in (("", sigma), ("_uncalibrated", sigma / calibration.factor(name))):
            metrics[f"{prefix}/{name}_nll{suffix}"] = gaussian_nll(errors, scaled)
            metrics[f"{prefix}/{name}_miscalibration_area{suffix}"] = miscalibration_area(errors, scaled)
        if name == "energy":
            metrics[f"{prefix}/energy_spearman"] = rank_correlation(sigma, np.abs(errors))
        else:
            metrics[f"{prefix}/force_spearman"] = rank_correlation(per_atom(sigma), per_atom(errors))
    return metrics
