"""Per-structure facts that filters, splits, normalisation and labels need, without the structures."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aenet_exp.data import Structure
from aenet_exp.data.hdf5 import StructureDatabase


@dataclass(frozen=True)
class Columns:
    """One row per structure (an HDF5 database has them as columns; a list computes them once)."""

    energy: np.ndarray  # (n,) total energy, eV
    n_atoms: np.ndarray  # (n,)
    has_forces: np.ndarray  # (n,) bool
    max_abs_force: np.ndarray  # (n,) largest |force component|, eV/Å (0 without forces)
    species: tuple[str, ...]  # every species present, sorted
    composition: np.ndarray  # (n, len(species)) atoms of each species

    @classmethod
    def of_structures(cls, structures: Sequence[Structure]) -> "Columns":
        species = tuple(sorted({sym for s in structures for sym in s.species}))
        position = {sym: k for k, sym in enumerate(species)}
        composition = np.zeros((len(structures), len(species)), dtype=np.int64)
        for row, s in enumerate(structures):
            symbols, counts = np.unique(s.species, return_counts=True)
            composition[row, [position[sym] for sym in symbols]] = counts
        return cls(
            energy=np.array([s.energy for s in structures], dtype=float),
            n_atoms=np.array([s.n_atoms for s in structures]),
            has_forces=np.array([s.forces is not None for s in structures]),
            max_abs_force=np.array([np.abs(s.forces).max() if s.forces is not None else 0.0 for s in structures]),
            species=species,
            composition=composition,
        )

    @classmethod
    def of_database(cls, database: StructureDatabase) -> "Columns":
        """The columns of an HDF5 structure database, read without reading any structure."""
        species = tuple(sorted(database.species))
        order = [database.species.index(sym) for sym in species]
        return cls(
            energy=database.energies,
            n_atoms=database.n_atoms,
            has_forces=database.has_forces,
            max_abs_force=np.nan_to_num(database.max_abs_force, nan=0.0),
            species=species,
            composition=database.composition()[:, order],
        )

    def digest(self) -> str:
        """A short hash of the energies, atom counts, compositions and force labels (changes with the data)."""
        h = hashlib.sha256()
        for array in (self.energy, self.n_atoms, self.composition, self.has_forces):
            h.update(np.ascontiguousarray(array).tobytes())
        h.update(",".join(self.species).encode())
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.energy)

    def take(self, indices: np.ndarray) -> "Columns":
        """The rows ``indices``."""
        return Columns(
            self.energy[indices], self.n_atoms[indices], self.has_forces[indices], self.max_abs_force[indices],
            self.species, self.composition[indices],
        )

    def concat(self, other: "Columns") -> "Columns":
        """The rows of ``self`` followed by those of ``other`` (species merged, sorted)."""
        species = tuple(sorted(set(self.species) | set(other.species)))

        def widened(columns: "Columns") -> np.ndarray:
            composition = np.zeros((len(columns), len(species)), dtype=np.int64)
            composition[:, [species.index(s) for s in columns.species]] = columns.composition
            return composition

        join = lambda name: np.concatenate([getattr(self, name), getattr(other, name)])  # noqa: E731
        return Columns(
            join("energy"), join("n_atoms"), join("has_forces"), join("max_abs_force"), species,
            np.concatenate([widened(self), widened(other)]),
        )

    def reference_energy(self, atomic_energies: Mapping[str, float] | None) -> np.ndarray:
        """``(n,)`` Σ_i E_atomic[s_i] in eV (zeros without references)."""
        if atomic_energies is None:
            return np.zeros(len(self))
        return self.composition @ np.array([atomic_energies[s] for s in self.species])

    def target_energy_per_atom(self, atomic_energies: Mapping[str, float] | None, cohesive: bool) -> np.ndarray:
        """``(n,)`` energies per atom (eV/atom) in the training target space."""
        return (self.energy - self.reference_energy(atomic_energies if cohesive else None)) / self.n_atoms
