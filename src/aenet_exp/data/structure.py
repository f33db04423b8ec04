"""One atomic structure with its DFT labels, in Å, eV and eV/Å."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aenet_exp.data.errors import DataError


@dataclass(frozen=True)
class Structure:
    """An atomic structure and its reference labels.

    Attributes:
        species: chemical symbols, ``(n_atoms,)``.
        positions: Cartesian coordinates in Å, ``(n_atoms, 3)`` float64.
        cell: lattice vectors as rows in Å, ``(3, 3)``, or ``None`` for an isolated system.
        pbc: periodicity along each lattice vector, ``(3,)`` bool.
        energy: total energy in eV, or ``None`` when unlabelled.
        forces: forces in eV/Å, ``(n_atoms, 3)``, or ``None``.
        source: the file it was read from.
        frame: index of the frame within that file (0 for single-structure files).
    """

    species: tuple[str, ...]
    positions: np.ndarray
    cell: np.ndarray | None = None
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    energy: float | None = None
    forces: np.ndarray | None = None
    source: str = "<memory>"
    frame: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "species", tuple(str(s) for s in self.species))
        object.__setattr__(self, "pbc", np.broadcast_to(np.asarray(self.pbc, dtype=bool), (3,)).copy())
        for name, convert in (("positions", self._array), ("cell", self._array), ("forces", self._array),
                              ("energy", float)):
            value = getattr(self, name)
            if value is None and name == "positions":
                self._fail("a structure needs positions")
            if value is not None:
                try:
                    object.__setattr__(self, name, convert(value))
                except (TypeError, ValueError):
                    self._fail(f"{name}: expected numbers, got {value!r}")
        self._validate()

    @staticmethod
    def _array(value) -> np.ndarray:
        return np.asarray(value, dtype=np.float64)

    def _fail(self, message: str) -> None:
        where = f"frame {self.frame}: " if self.frame else ""
        raise DataError(self.source, where + message)

    def _validate(self) -> None:
        n = len(self.species)
        if n == 0:
            self._fail("a structure needs at least one atom")
        if self.positions.shape != (n, 3):
            self._fail(f"expected positions of shape ({n}, 3), got {self.positions.shape}")
        if not np.isfinite(self.positions).all():
            self._fail("positions contain NaN or inf")
        if self.cell is not None:
            if self.cell.shape != (3, 3):
                self._fail(f"expected a (3, 3) cell, got {self.cell.shape}")
            if not np.isfinite(self.cell).all():
                self._fail("cell contains NaN or inf")
            if self.pbc.any() and abs(np.linalg.det(self.cell)) < 1e-8:
                self._fail("periodic cell has zero volume")
        elif self.pbc.any():
            self._fail("periodic structure without a cell")
        if self.energy is not None and not np.isfinite(self.energy):
            self._fail("energy is NaN or inf")
        if self.forces is not None:
            if self.forces.shape != (n, 3):
                self._fail(f"expected forces of shape ({n}, 3), got {self.forces.shape}")
            if not np.isfinite(self.forces).all():
                self._fail("forces contain NaN or inf")

    @property
    def n_atoms(self) -> int:
        return len(self.species)

    @property
    def is_periodic(self) -> bool:
        return bool(self.pbc.any())
