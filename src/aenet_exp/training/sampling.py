"""Which force-labelled training structures are supervised on forces in each epoch."""

from __future__ import annotations

import math

import numpy as np


class ForceSampler:
    """The reference's force sub-sampling.

    ``n = max(ceil(fraction · N), min_structures_per_epoch)`` (at most N) of the N
    force-labelled training structures are supervised. ``fixed`` draws them once;
    ``random`` re-draws them every ``epochs_per_window`` epochs when
    ``resample_each_epoch``, else once. Draws come from a generator seeded with ``seed``.
    """

    def __init__(
        self,
        candidates: np.ndarray,
        fraction: float,
        sampling: str,
        resample_each_epoch: bool,
        min_structures: int | None,
        epochs_per_window: int,
        seed: int,
    ):
        self.candidates = np.asarray(candidates)
        self.fraction = fraction
        self.resamples = sampling == "random" and resample_each_epoch and fraction < 1
        self.epochs_per_window = epochs_per_window
        n = math.ceil(fraction * len(self.candidates) - 1e-9)
        self.size = min(len(self.candidates), max(n, min_structures or 0))
        self.rng = np.random.default_rng(seed)
        self.selected: frozenset[int] = frozenset()
        self.window = -1

    def _draw(self) -> frozenset[int]:
        if self.size >= len(self.candidates):
            return frozenset(int(i) for i in self.candidates)
        return frozenset(int(i) for i in self.rng.choice(self.candidates, size=self.size, replace=False))

    def select(self, epoch: int) -> tuple[frozenset[int], bool]:
        """The structures supervised on forces in ``epoch`` (0-based), and whether they were newly drawn."""
        window = epoch // self.epochs_per_window if self.resamples else 0
        if window == self.window:
            return self.selected, False
        self.window, self.selected = window, self._draw()
        return self.selected, True
