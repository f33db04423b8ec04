"""The ASE calculator: energies as the potential gives them, forces and stress as finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from aenet_exp.calculator import Calculator
from aenet_exp.data import read_structures
from aenet_exp.model import Potential
from aenet_exp.model.locate import model_path

from conftest import make_potential


def atoms_of(structure) -> Atoms:
    return Atoms(structure.species, positions=structure.positions, cell=structure.cell, pbc=structure.pbc)


@pytest.fixture(scope="module")
def tio2(data_dir):
    return atoms_of(read_structures(data_dir / "tio2" / "structure1067.xsf")[0])


@pytest.fixture
def calculator():
    return Calculator(make_potential(["O", "Ti"], seed=3, rad_cutoff=5.0, ang_cutoff=3.5))


def test_energy_equals_the_potential(tio2, calculator, data_dir):
    structure = read_structures(data_dir / "tio2" / "structure1067.xsf")[0]
    tio2.calc = calculator
    with torch.no_grad():
        expected = calculator.potential(calculator.potential.descriptor.graph(structure)).item()
    assert tio2.get_potential_energy() == pytest.approx(expected, rel=1e-12)
    assert tio2.get_potential_energies().sum() == pytest.approx(expected, rel=1e-12)


def test_forces_are_finite_differences(tio2, calculator):
    tio2.calc = calculator
    forces = tio2.get_forces()
    h, numeric = 1e-5, np.zeros_like(forces)
    for atom, axis in np.ndindex(*forces.shape):
        energies = []
        for sign in (1, -1):
            moved = tio2.copy()
            moved.calc = calculator
            moved.positions[atom, axis] += sign * h
            energies.append(moved.get_potential_energy())
        numeric[atom, axis] = -(energies[0] - energies[1]) / (2 * h)
    assert np.abs(forces - numeric).max() <= 1e-6 * np.abs(numeric).max()


def test_stress_is_strain_derivative(tio2, calculator):
    tio2.calc = calculator
    stress = tio2.get_stress(voigt=False)
    h, volume = 1e-5, tio2.get_volume()
    numeric = np.zeros((3, 3))
    for i, j in np.ndindex(3, 3):
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * h
            deformed = tio2.copy()
            deformed.set_cell(tio2.cell.array @ strain, scale_atoms=True)
            deformed.calc = calculator
            energies.append(deformed.get_potential_energy())
        numeric[i, j] = (energies[0] - energies[1]) / (2 * h) / volume
    numeric = 0.5 * (numeric + numeric.T)
    assert np.abs(stress - numeric).max() <= 1e-6 * np.abs(numeric).max()


def test_molecule_has_no_stress(data_dir, calculator):
    from ase.calculators.calculator import PropertyNotImplementedError

    molecule = atoms_of(read_structures(data_dir / "chebyshev" / "water.xyz")[0])
    molecule.calc = Calculator(make_potential(["H", "O"], seed=1))
    assert np.isfinite(molecule.get_forces()).all()
    with pytest.raises(PropertyNotImplementedError):
        molecule.get_stress()


def test_predict_batches_equal_single_evaluations(data_dir, calculator):
    structures = read_structures(str(data_dir / "tio2-small" / "*.xsf"))[:7]
    predicted = calculator.predict(structures, batch_size=3)
    energies, forces = predicted.energy_pred, predicted.force_pred
    for structure, energy, force in zip(structures, energies, forces):
        atoms = atoms_of(structure)
        atoms.calc = calculator
        assert energy == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
        np.testing.assert_allclose(force, atoms.get_forces(), atol=1e-10)


def test_load_from_run_directory_or_file_in_float64(tmp_path, tio2):
    potential = make_potential(["O", "Ti"], seed=2).astype(torch.float32)
    potential.save(tmp_path / "potential.pt")
    assert model_path(tmp_path) == tmp_path / "potential.pt"
    calc = Calculator.load(tmp_path)
    assert calc.potential.descriptor.dtype == torch.float64 and calc.potential.feature_mean.dtype == torch.float64
    tio2.calc = calc
    assert np.isfinite(tio2.get_potential_energy())
    with pytest.raises(FileNotFoundError, match="no model file"):
        Calculator.load(tmp_path / "missing")



def test_coincident_atoms_are_named_not_given_nan_forces():
    molecule = Atoms("HHO", positions=[[0, 0, 0], [0, 0, 0], [0.96, 0, 0]])
    molecule.calc = Calculator(make_potential(["H", "O"], seed=1))
    with pytest.raises(ValueError, match=r"atoms 0 \(H\) and 1 \(H\) are 0.000 Å apart"):
        molecule.get_forces()


def test_predicting_nothing_gives_nothing(calculator):
    predicted = calculator.predict([])
    energies, forces = predicted.energy_pred, predicted.force_pred
    assert energies.shape == (0,) and forces == []


def test_the_calculator_gives_the_members_mean_and_spread(data_dir):
    single = make_potential(["Ti", "O"], seed=1)
    committee = Potential(single.descriptor, single.architecture["hidden"], single.architecture["activations"],
                          members=3, seeds=[1, 2, 3])
    committee.load_state_dict({**single.state_dict(), **{k: v for k, v in committee.state_dict().items()
                                                         if k.startswith("networks.")}, "sigma_scale": torch.tensor([1.5, 2.0])})
    structure = read_structures(data_dir / "tio2/structure0407.xsf")[0]
    atoms = Atoms(structure.species, positions=structure.positions, cell=structure.cell, pbc=True)
    members = []
    for k in range(3):
        atoms.calc = Calculator(committee.member(k))
        members.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
        assert "energy_std" not in atoms.calc.results  # a single potential has no spread
    atoms.calc = Calculator(committee)
    energies, forces, stresses = (np.array([m[i] for m in members]) for i in range(3))
    assert atoms.get_potential_energy() == pytest.approx(energies.mean(), rel=1e-13)
    np.testing.assert_allclose(atoms.get_forces(), forces.mean(0), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(atoms.get_stress(), stresses.mean(0), rtol=1e-12, atol=1e-14)
    assert atoms.calc.results["energy_std"] == pytest.approx(1.5 * energies.std(ddof=1), rel=1e-10)
    forces_std = atoms.calc.results["forces_std"]
    assert forces_std.dtype == np.float64 and forces_std.shape == (len(structure.species), 3)
    np.testing.assert_allclose(forces_std, 2.0 * forces.std(0, ddof=1), rtol=1e-10, atol=1e-14)
    batched = Calculator(committee).predict([atoms, atoms], batch_size=2)
    np.testing.assert_allclose(batched.energy_std, [atoms.calc.results["energy_std"]] * 2, rtol=1e-12)
    np.testing.assert_allclose(batched.force_std[1], forces_std, rtol=1e-12, atol=1e-15)
