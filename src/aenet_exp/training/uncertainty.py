"""How good a committee's uncertainty is, and its calibration: closed forms on errors and standard deviations.

Every function takes the errors ``e`` of the committee's mean prediction and its standard deviations ``σ``
(arrays of the same shape, same unit) of one quantity: energies per atom (one entry per structure) or
force components (one per atom and direction). Entries whose σ is (near) zero are left out of the fit and
the scores (:func:`usable`); the rank correlation takes every entry.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from aenet_exp.training.events import Predictions

# Central intervals whose coverage the miscalibration area compares: expected fractions 0.01, 0.02, ..., 0.99.
COVERAGE_LEVELS = np.linspace(0.01, 0.99, 99)


# A σ below this fraction of the set's median says nothing about the error: force components that vanish by
# symmetry agree in every member to ~1e-6 eV/Å, while their DFT labels keep residuals of ~1e-3 eV/Å; such
# entries would rule a likelihood fit (|e|/σ in the thousands).
SIGMA_FLOOR = 1e-3


def usable(errors: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The entries whose σ is finite and at least :data:`SIGMA_FLOOR` times the median σ, flattened."""
    errors, sigma = np.ravel(errors), np.ravel(sigma)
    keep = np.isfinite(sigma) & (sigma > 0)
    if keep.any():
        keep &= sigma >= SIGMA_FLOOR * np.median(sigma[keep])
    return errors[keep], sigma[keep]


def calibration_factor(errors: np.ndarray, sigma: np.ndarray) -> float:
    """The factor ``s`` maximising the Gaussian likelihood of ``errors`` under ``s·σ``: ``s² = mean(e²/σ²)``
    (Imbalzano et al., J. Chem. Phys. 154, 074102 (2021), without their finite-committee correction)."""
    errors, sigma = usable(errors, sigma)
    if not len(errors):
        return 1.0
    return math.sqrt(float(np.mean((errors / sigma) ** 2)))


def gaussian_nll(errors: np.ndarray, sigma: np.ndarray) -> float:
    """Mean negative log-likelihood of ``errors`` under centred Gaussians of width ``σ``:
    ``mean(½ log(2πσ²) + e²/(2σ²))`` (nats; lower is better; depends on the unit of ``e`` and ``σ``)."""
    errors, sigma = usable(errors, sigma)
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
    ``|e| ≤ z_p·σ``, ``z_p = Φ⁻¹((1 + p)/2) = √2·erfinv(p)``."""
    errors, sigma = usable(errors, sigma)
    z = np.abs(errors / sigma)
    standard = NormalDist()
    return np.array([np.mean(z <= standard.inv_cdf((1 + p) / 2)) for p in levels])


def miscalibration_area(errors: np.ndarray, sigma: np.ndarray, levels: np.ndarray = COVERAGE_LEVELS) -> float:
    """Mean |observed − expected| coverage over ``levels`` (0: calibrated; at most 0.5)."""
    return float(np.mean(np.abs(observed_coverage(errors, sigma, levels) - levels)))


def energy_errors(predictions: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the mean energy per atom and its σ per atom ``(n,)`` eV/atom."""
    reference, predicted = predictions.energy_per_atom()
    return predicted - reference, predictions.spread()[0]


def force_errors(predictions: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the mean force components and their σ ``(n_components,)`` eV/Å (structures with forces)."""
    reference, predicted = predictions.force_components()
    return predicted - reference, predictions.spread()[1]


def per_atom(components: np.ndarray) -> np.ndarray:
    """``(n_atoms·3,)`` components -> ``(n_atoms,)`` vector lengths."""
    return np.linalg.norm(components.reshape(-1, 3), axis=1)


def calibration_factors(predictions: Predictions) -> dict[str, float]:
    """The factors of a committee's σ fitted on ``predictions`` of held-out structures (made with factors 1):
    :func:`calibration_factor` of the energies per atom (``energy``) and, with forces, of the force components
    (``force``; absent: that σ is left as it is)."""
    factors = {"energy": calibration_factor(*energy_errors(predictions))}
    if predictions.force_components()[0].size:
        factors["force"] = calibration_factor(*force_errors(predictions))
    return factors


def calibration_metrics(factors: dict[str, float], structures: int) -> dict[str, float]:
    """The fitted factors and the calibration split's size as final metrics."""
    return {**{f"final/calibration/{name}_factor": value for name, value in factors.items()},
            "final/calibration/structures": structures}


def uncertainty_metrics(predictions: Predictions, prefix: str, factors: tuple[float, float]) -> dict[str, float]:
    """NLL, Spearman ρ and miscalibration area of the energies per atom (per structure) and, with forces, of the
    force components (ρ per atom, between |σ_F| and |ΔF|): with the calibrated σ of ``predictions`` and, named
    ``..._uncalibrated``, with σ divided by the calibration ``factors`` (energy, force)."""
    metrics = {}
    quantities = {"energy": energy_errors(predictions)}
    if predictions.force_components()[0].size:
        quantities["force"] = force_errors(predictions)
    for (name, (errors, sigma)), factor in zip(quantities.items(), factors):
        for suffix, scaled in (("", sigma), ("_uncalibrated", sigma / factor)):
            metrics[f"{prefix}/{name}_nll{suffix}"] = gaussian_nll(errors, scaled)
            metrics[f"{prefix}/{name}_miscalibration_area{suffix}"] = miscalibration_area(errors, scaled)
        if name == "energy":
            metrics[f"{prefix}/energy_spearman"] = rank_correlation(sigma, np.abs(errors))
        else:
            metrics[f"{prefix}/force_spearman"] = rank_correlation(per_atom(sigma), per_atom(errors))
    return metrics
