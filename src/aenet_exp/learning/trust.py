"""The trust window (DP-GEN's model deviation criterion): a frame whose committee σ is below ``low`` is *accurate*,
between ``low`` and ``high`` a *candidate* for labelling, at or above ``high`` *failed* (unphysical, not labelled)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"
CLASSES = (ACCURATE, CANDIDATE, FAILED)


@dataclass(frozen=True)
class TrustWindow:
    """Trust levels of the committee σ (eV/Å for forces, eV/atom for energies), ``0 <= low < high``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high:
            raise ValueError(f"trust levels must satisfy 0 <= low < high, got low={self.low}, high={self.high}")

    def classify(self, sigma: np.ndarray) -> np.ndarray:
        """The class of each σ ``(n,)`` as strings of :data:`CLASSES`; a σ that is not finite is failed."""
        sigma = np.asarray(sigma, dtype=float)
        classes = np.full(sigma.shape, FAILED, dtype=object)
        finite = np.isfinite(sigma)
        classes[finite & (sigma < self.low)] = ACCURATE
        classes[finite & (sigma >= self.low) & (sigma < self.high)] = CANDIDATE
        return classes

    def fractions(self, sigma: np.ndarray) -> dict[str, float]:
        """The fraction of frames in each class (NaN each when there are none)."""
        classes = self.classify(sigma)
        if not len(classes):
            return {name: float("nan") for name in CLASSES}
        return {name: float(np.mean(classes == name)) for name in CLASSES}
