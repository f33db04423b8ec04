"""A committee's disagreement on every structure of a pool, and the structures most worth a DFT calculation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from aenet_exp.calculator import Calculator
from aenet_exp.data import DataError, Structure
from aenet_exp.data.geometry import overlap_message
from aenet_exp.files import write_atomically

# What a pool structure is ranked by: σ of the energy per atom, or the largest per-atom |σ_F|.
CRITERIA = {"energy": "σ of the energy per atom (eV/atom)", "forces": "largest per-atom |σ_F| (eV/Å)"}


@dataclass(frozen=True)
class Skipped:
    """A pool structure the committee cannot evaluate: where it is (file and frame) and why."""

    index: int  # position in the pool
    where: str
    why: str


@dataclass
class Disagreement:
    """A committee's spread on each pool structure, in pool order; NaN for the :attr:`skipped` structures."""

    energy_std_per_atom: np.ndarray  # (n_pool,) eV/atom
    max_force_std: np.ndarray  # (n_pool,) eV/Å: the largest |σ_F| of the structure's atoms
    energy: np.ndarray  # (n_pool,) eV, the committee's mean energy
    skipped: list[Skipped] = field(default_factory=list)

    def scores(self, by: str) -> np.ndarray:
        """``(n_pool,)`` the criterion ``by`` (:data:`CRITERIA`) of every structure."""
        return self.energy_std_per_atom if by == "energy" else self.max_force_std


def disagreement(
    calculator: Calculator, pool: Sequence[Structure], batch_size: int = 64,
    progress: Callable[[int], None] = lambda done: None,
) -> Disagreement:
    """The committee's spread on every structure of ``pool`` it can evaluate (:func:`screened`), ``batch_size`` at a
    time (a lazy pool, e.g. an HDF5 database, is read one batch at a time, each structure once); ``progress`` is told
    of every finished batch's size."""
    spread = Disagreement(*(np.full(len(pool), np.nan) for _ in range(3)))
    species = calculator.potential.species
    for start in range(0, len(pool), batch_size):
        indices = range(start, min(start + batch_size, len(pool)))
        checked = [screened(pool, index, species) for index in indices]
        spread.skipped += [c for c in checked if isinstance(c, Skipped)]
        kept = [index for index, c in zip(indices, checked) if not isinstance(c, Skipped)]
        structures = [c for c in checked if not isinstance(c, Skipped)]
        if structures:
            predicted = calculator.predict(structures, batch_size=batch_size)
            spread.energy_std_per_atom[kept] = predicted.energy_std_per_atom()
            spread.max_force_std[kept] = [np.linalg.norm(std, axis=1).max(initial=0.0) for std in predicted.force_std]
            spread.energy[kept] = predicted.energy_pred
        progress(len(indices))
    return spread


def screened(pool: Sequence[Structure], index: int, species: Sequence[str]) -> Structure | Skipped:
    """Pool structure ``index``, or why the committee of ``species`` cannot evaluate it: unreadable (a database row
    naming no known species), species the committee never saw, or overlapping atoms (as training data is checked)."""
    try:
        s = pool[index]
    except DataError as error:
        return Skipped(index, error.path, error.message)
    unknown = sorted(set(s.species) - set(species))
    why = f"species {unknown} are not the committee's {list(species)}" if unknown else overlap_message(s)
    return s if why is None else Skipped(index, f"{s.source} frame {s.frame}", why)


def top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest ``scores``, largest first (ties in pool order; NaN, a skipped structure, never)."""
    order = np.argsort(-scores, kind="stable")
    return order[~np.isnan(scores[order])][:n]


def selected_atoms(pool: Sequence[Structure], chosen: np.ndarray, spread: Disagreement, by: str) -> list[Atoms]:
    """The ``chosen`` pool structures as ASE atoms, their DFT labels kept when the pool has them, and in ``info``
    the committee's σ values, its mean energy, the rank and where the structure came from."""
    images = []
    for rank, index in enumerate(chosen, start=1):
        s = pool[int(index)]
        atoms = Atoms(s.species, positions=s.positions, cell=s.cell, pbc=s.pbc)
        if s.energy is not None or s.forces is not None:
            atoms.calc = SinglePointCalculator(atoms, energy=s.energy, forces=s.forces)
        atoms.info.update({
            "selection_rank": rank, "selected_by": by, "pool_index": int(index), "pool_source": s.source,
            "pool_frame": s.frame, "committee_energy": float(spread.energy[index]),
            "committee_energy_std_per_atom": float(spread.energy_std_per_atom[index]),
            "committee_max_force_std": float(spread.max_force_std[index]),
        })
        images.append(atoms)
    return images


def write_extxyz(path: Path, images: list[Atoms]) -> None:
    """``images`` as one extended XYZ file, written atomically."""
    from ase.io import write  # ase.io loads every format's module: only when a selection is written

    write_atomically(path, lambda temporary: write(temporary, images, format="extxyz"))
