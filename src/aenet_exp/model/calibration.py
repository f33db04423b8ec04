"""A committee's σ: the one reduction of its members' outputs to their mean and spread, and the calibration of that
spread (:class:`Calibration`, kept on the potential as :attr:`Potential.calibration`).

The factors are fitted on structures held out of training by maximising the Gaussian likelihood of the mean's
errors under ``factor·σ`` (Imbalzano et al., J. Chem. Phys. 154, 074102 (2021), without their finite-committee
correction): ``factor² = mean(e²/σ²)`` over the usable entries (:func:`usable`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

Quantity = Literal["energy", "force"]

# A σ below this fraction of the set's median says nothing about the error: force components that vanish by
# symmetry agree in every member to ~1e-6 eV/Å, while their DFT labels keep residuals of ~1e-3 eV/Å; such
# entries would rule a likelihood fit (|e|/σ in the thousands).
SIGMA_FLOOR = 1e-3

# The potential's buffer of the factors ``(2,)``: energy, forces (its name in every saved state dict).
BUFFER = "sigma_scale"


def mean_and_spread(members: torch.Tensor, factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A committee's outputs ``(members, ...)`` reduced to their mean ``(...)`` and, with two members or more, their
    unbiased standard deviation times ``factor`` (None for a single potential). Computed in the dtype and on the
    device of ``members``."""
    mean = members.mean(0)
    if members.shape[0] < 2:
        return mean, None
    spread = members.std(0)
    return mean, spread if factor == 1.0 else factor * spread


def usable(errors: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The entries whose σ is finite and at least :data:`SIGMA_FLOOR` times the median σ, flattened."""
    errors, sigma = np.ravel(errors), np.ravel(sigma)
    keep = np.isfinite(sigma) & (sigma > 0)
    if keep.any():
        keep &= sigma >= SIGMA_FLOOR * np.median(sigma[keep])
    return errors[keep], sigma[keep]


def calibration_factor(errors: np.ndarray, sigma: np.ndarray) -> float:
    """The factor ``s`` maximising the Gaussian likelihood of ``errors`` under ``s·σ``: ``s² = mean(e²/σ²)`` over the
    :func:`usable` entries (1 when there are none)."""
    errors, sigma = usable(errors, sigma)
    if not len(errors):
        return 1.0
    return math.sqrt(float(np.mean((errors / sigma) ** 2)))


class Scored(Protocol):
    """What a calibration is fitted on: a committee's predictions of held-out structures
    (:class:`aenet_exp.evaluation.predictions.Predictions`)."""

    def energy_errors(self) -> tuple[np.ndarray, np.ndarray]: ...

    def force_errors(self) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Calibration:
    """The factors a committee's standard deviations are multiplied by: of energies and of forces (1: as the members
    give it; ``force`` None: not fitted, taken as 1)."""

    energy: float = 1.0
    force: float | None = None

    @classmethod
    def fit(cls, predictions: Scored) -> "Calibration":
        """The factors of a committee's σ fitted on ``predictions`` of held-out structures (made with factors 1): of the
        energies per atom and, when some structures have forces, of the force components (:func:`calibration_factor`)."""
        energy = calibration_factor(*predictions.energy_errors())
        force_errors, force_sigma = predictions.force_errors()
        return cls(energy, calibration_factor(force_errors, force_sigma) if force_errors.size else None)

    def factor(self, quantity: Quantity) -> float:
        """The factor of σ of ``quantity``."""
        if quantity == "energy":
            return self.energy
        return 1.0 if self.force is None else self.force

    def apply(self, members: torch.Tensor, quantity: Quantity, unit: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mean of a committee's outputs ``(members, ...)`` of ``quantity`` and their calibrated σ (None for a single
        potential): :func:`mean_and_spread` with this quantity's factor times ``unit`` (σ in eV for outputs in units of
        ``unit`` eV, e.g. normalised energies; applied as ``(factor·unit)·σ``)."""
        return mean_and_spread(members, self.factor(quantity) * unit)

    def metrics(self, structures: int) -> dict[str, float]:
        """The fitted factors and the number of calibration structures as final metrics."""
        factors = {"energy": self.energy, **({"force": self.force} if self.force is not None else {})}
        return {**{f"final/calibration/{name}_factor": value for name, value in factors.items()},
                "final/calibration/structures": structures}

    @classmethod
    def read(cls, buffer: torch.Tensor) -> "Calibration":
        """The calibration held in a potential's buffer :data:`BUFFER` ``(2,)``."""
        energy, force = buffer.tolist()
        return cls(energy, force)

    def write(self, buffer: torch.Tensor) -> None:
        """Keep this calibration in a potential's buffer :data:`BUFFER` ``(2,)``, to float32 precision whatever the
        buffer's dtype (as it always was: models keep their factors alike in every precision)."""
        buffer.copy_(torch.tensor([self.energy, self.factor("force")]))
