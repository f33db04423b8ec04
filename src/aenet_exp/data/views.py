"""Sequences of structures made of others without copying them: a subset, a chain (picklable for DataLoader workers)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aenet_exp.data.structure import Structure


class Subset(Sequence):
    """Structures ``indices`` of a lazily read ``base`` (picklable for DataLoader workers)."""

    def __init__(self, base: Sequence[Structure], indices: np.ndarray):
        self.base, self.indices = base, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Structure:
        return self.base[int(self.indices[i])]


class Chain(Sequence):
    """Structures of ``first`` followed by those of ``second`` (picklable for DataLoader workers)."""

    def __init__(self, first: Sequence[Structure], second: Sequence[Structure]):
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, i: int) -> Structure:
        return self.first[i] if i < len(self.first) else self.second[i - len(self.first)]
