"""Labels are keyed by structure, stored atomically the moment they arrive, and readable as training data."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read, write

from aenet_exp.data.hdf5 import StructureDatabase
from aenet_exp.learning.labels import LabelStore, atoms_key, structure_key
from aenet_exp.learning.oracles import Label


def copper(rattle: float = 0.0, seed: int = 0) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms


def test_identical_structures_share_a_key_and_others_do_not():
    a, b = copper(0.05), copper(0.05)
    assert atoms_key(a) == atoms_key(b)
    moved = a.copy()
    moved.positions[2, 1] += 1e-4
    assert atoms_key(moved) != atoms_key(a)
    strained = a.copy()
    strained.set_cell(a.cell * 1.01, scale_atoms=False)
    assert atoms_key(strained) != atoms_key(a)
    swapped = a.copy()
    swapped.symbols[0] = "Ag"
    assert atoms_key(swapped) != atoms_key(a)
    isolated = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    assert atoms_key(isolated) != atoms_key(Atoms("H2O", positions=isolated.positions, pbc=True, cell=[10] * 3))


def test_a_structure_keeps_its_key_through_extended_xyz(tmp_path):
    atoms = copper(0.1, seed=3)
    write(tmp_path / "a.xyz", atoms, format="extxyz")
    assert atoms_key(read(tmp_path / "a.xyz")) == atoms_key(atoms)


def test_the_key_rounds_below_a_micro_angstrom():
    positions = np.array([[0.1234567, 0.0, 0.0]])
    assert structure_key(["H"], positions, None, [False] * 3) == structure_key(["H"], positions + 1e-9, None, [False] * 3)
    assert structure_key(["H"], -0.0 * positions, None, [False] * 3) == structure_key(["H"], 0.0 * positions, None, [False] * 3)


def label_of(atoms: Atoms, energy: float) -> Label:
    return Label(energy, np.full((len(atoms), 3), 0.5), np.arange(6.0))


def test_labels_are_stored_in_order_as_xyz_and_database(tmp_path):
    store = LabelStore(tmp_path)
    structures = [copper(0.05, seed=k) for k in range(3)]
    for k, atoms in enumerate(structures):
        store.add(atoms, label_of(atoms, -1.0 - k), {"generation": 1})
    assert store.count() == 3 and store.keys() == {atoms_key(a) for a in structures}
    images = read(tmp_path / "labels.xyz", index=":")
    assert [image.get_potential_energy() for image in images] == [-1.0, -2.0, -3.0]
    assert images[1].info["generation"] == 1 and images[1].info["label_key"] == atoms_key(structures[1])
    np.testing.assert_allclose(images[2].get_forces(), 0.5)
    np.testing.assert_allclose(images[2].get_stress(voigt=True), np.arange(6.0))
    with StructureDatabase(tmp_path / "labels.h5") as database:
        assert len(database) == 3
        assert database[2].energy == -3.0
        np.testing.assert_allclose(database[0].positions, structures[0].positions)
    reopened = LabelStore(tmp_path)  # a resumed campaign sees what is there
    assert reopened.count() == 3 and [s.energy for s in reopened.structures()] == [-1.0, -2.0, -3.0]


def test_failures_are_recorded_with_their_reason_and_never_sent_again(tmp_path):
    store = LabelStore(tmp_path)
    atoms = copper(0.05)
    store.add_failure(atoms, "timed out after 5 s", {"generation": 2})
    assert store.count() == 0 and store.keys() == {atoms_key(atoms)}
    failed = read(tmp_path / "failed_labels.xyz", index=":")
    assert failed[0].info["failure"] == "timed out after 5 s" and failed[0].info["generation"] == 2


def test_nothing_is_left_half_written_when_the_database_cannot_be_written(tmp_path):
    store = LabelStore(tmp_path)
    (tmp_path / "labels.h5").mkdir()  # in the way
    atoms = copper(0.05)
    with pytest.raises(Exception, match="labels.h5"):
        store.add(atoms, label_of(atoms, -1.0), {})
    assert store.count() == 1  # the label itself is kept: never paid twice
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
