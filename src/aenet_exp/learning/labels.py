"""The campaign's labels: never lost, never paid twice.

Each label arrives as one file ``labels/<sequence>-<key>.xyz`` written atomically the moment the oracle returns it;
``labels.xyz`` (every label, in order of arrival) and ``labels.h5`` (the same as an HDF5 structure database for
``train data.database=``) are rewritten atomically from those files after each arrival. A structure is keyed by
a hash of its species, positions and cell (:func:`structure_key`): a key already stored, labelled or failed, is
never sent to the oracle again. Failed labels go to ``failed/`` and ``failed_labels.xyz`` with their reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from aenet_exp.calculator import structure_of
from aenet_exp.data import Structure
from aenet_exp.data.hdf5 import write_database
from aenet_exp.files import write_atomically
from aenet_exp.learning.oracles import Label

# Positions and cells are hashed rounded to this many decimals (Å): a structure written and read back as extended
# XYZ keeps its key; structures that differ by more than ~1e-6 Å get different keys.
KEY_DECIMALS = 6
LABEL_DIR, FAILED_DIR = "labels", "failed"
LABELS_XYZ, LABELS_H5, FAILED_XYZ = "labels.xyz", "labels.h5", "failed_labels.xyz"


def structure_key(species, positions: np.ndarray, cell: np.ndarray | None, pbc) -> str:
    """A hex digest of the species, the positions ``(n_atoms, 3)`` Å and the cell ``(3, 3)`` Å (None: isolated), each
    rounded to :data:`KEY_DECIMALS` decimals, and the periodicity."""
    digest = hashlib.sha256()
    digest.update(" ".join(str(s) for s in species).encode())
    for array in (positions, np.zeros((3, 3)) if cell is None else cell):
        rounded = np.round(np.asarray(array, dtype=np.float64), KEY_DECIMALS) + 0.0  # -0.0 -> 0.0
        digest.update(rounded.astype("<f8").tobytes())
    digest.update(np.asarray(pbc, dtype=bool).astype(np.uint8).tobytes())
    return digest.hexdigest()[:32]


def atoms_key(atoms: Atoms) -> str:
    """:func:`structure_key` of an ASE ``Atoms`` (its cell only when some direction is periodic)."""
    periodic = bool(np.any(atoms.pbc))
    return structure_key(atoms.get_chemical_symbols(), atoms.get_positions(), atoms.cell.array if periodic else None,
                         atoms.pbc)


def labelled_atoms(atoms: Atoms, label: Label, info: dict) -> Atoms:
    """A copy of ``atoms`` carrying ``label`` (as ASE's single-point results) and ``info``."""
    copy = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.cell, pbc=atoms.pbc)
    results = {"energy": label.energy, "forces": label.forces}
    if label.stress is not None:
        results["stress"] = label.stress
    copy.calc = SinglePointCalculator(copy, **results)
    copy.info.update(info)
    return copy


def _write_xyz(images: list[Atoms]):
    def write(path: Path) -> None:
        from ase.io import write as ase_write

        ase_write(path, images, format="extxyz")

    return write


def _read_xyz(path: Path) -> list[Atoms]:
    from ase.io import read

    return read(path, index=":", format="extxyz")


class LabelStore:
    """The labels of a campaign in ``directory`` (see the module)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        (self.directory / LABEL_DIR).mkdir(parents=True, exist_ok=True)
        (self.directory / FAILED_DIR).mkdir(parents=True, exist_ok=True)

    def _files(self, kind: str) -> list[Path]:
        return sorted((self.directory / kind).glob("*.xyz"))

    def keys(self) -> set[str]:
        """Every key stored, labelled or failed: structures never to be sent again."""
        return {path.stem.split("-", 1)[1] for kind in (LABEL_DIR, FAILED_DIR) for path in self._files(kind)}

    def count(self) -> int:
        """How many labels are stored."""
        return len(self._files(LABEL_DIR))

    def _next_name(self, kind: str, key: str) -> Path:
        return self.directory / kind / f"{len(self._files(kind)):06d}-{key}.xyz"

    def add(self, atoms: Atoms, label: Label, info: dict) -> Path:
        """Store ``atoms`` with its ``label`` and ``info`` (generation, oracle, ...) under its key, then rewrite
        ``labels.xyz`` and ``labels.h5``; returns the label's own file."""
        key = atoms_key(atoms)
        path = write_atomically(self._next_name(LABEL_DIR, key), _write_xyz([labelled_atoms(atoms, label, {**info, "label_key": key})]))
        self._rewrite()
        return path

    def add_failure(self, atoms: Atoms, reason: str, info: dict) -> Path:
        """Record that ``atoms`` could not be labelled, and why (``failed_labels.xyz``)."""
        key = atoms_key(atoms)
        copy = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.cell, pbc=atoms.pbc)
        copy.info.update({**info, "label_key": key, "failure": reason})
        path = write_atomically(self._next_name(FAILED_DIR, key), _write_xyz([copy]))
        failed = [image for file in self._files(FAILED_DIR) for image in _read_xyz(file)]
        write_atomically(self.directory / FAILED_XYZ, _write_xyz(failed))
        return path

    def images(self) -> list[Atoms]:
        """Every stored label as ASE atoms with its results and info, in order of arrival."""
        return [image for file in self._files(LABEL_DIR) for image in _read_xyz(file)]

    def structures(self) -> list[Structure]:
        """Every stored label as a :class:`Structure` (energy, forces), in order of arrival."""
        return [structure_of_labelled(image, f"{self.directory / LABELS_XYZ}", frame)
                for frame, image in enumerate(self.images())]

    def _rewrite(self) -> None:
        images = self.images()
        write_atomically(self.directory / LABELS_XYZ, _write_xyz(images))
        structures = [structure_of_labelled(image, str(self.directory / LABELS_XYZ), frame)
                      for frame, image in enumerate(images)]
        write_database(structures, self.directory / LABELS_H5)


def structure_of_labelled(atoms: Atoms, source: str, frame: int) -> Structure:
    """The :class:`Structure` of labelled ``atoms`` (energy and forces from its single-point results)."""
    return replace(structure_of(atoms), energy=atoms.get_potential_energy(), forces=atoms.get_forces(), source=source,
                   frame=frame)
