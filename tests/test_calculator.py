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

from helpers import make_potential


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


class AutogradCalculator(Calculator):
    """The calculator as it was before the analytic path: the descriptor under autograd, fresh lists every call."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        from ase.calculators.calculator import Calculator as AseCalculator

        from aenet_exp.calculator import structure_of
        from aenet_exp.model.forces import GraphInputs, evaluate

        AseCalculator.calculate(self, atoms, properties, system_changes or [])
        structure = structure_of(self.atoms)
        graph = self.potential.descriptor.graph(structure).to(self.device, self.dtype)
        result = evaluate(self.potential, GraphInputs(self.potential.descriptor, graph, strain=True))
        energy, energy_std = self.potential.calibration.apply(result.energy.detach().double(), "energy")
        forces, forces_std = self.potential.calibration.apply(result.forces.detach().double(), "force")
        self.results["energy"], self.results["forces"] = float(energy[0]), forces.numpy()
        if energy_std is not None:
            self.results["energy_std"], self.results["forces_std"] = float(energy_std[0]), forces_std.numpy()
        if structure.is_periodic:
            d_strain = result.strain_derivative.detach().mean(0)
            sigma = 0.5 * (d_strain + d_strain.T).double().numpy() / abs(float(np.linalg.det(structure.cell)))
            self.results["stress"] = sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def committee_of(potential, members: int):
    from aenet_exp.model import Potential

    committee = Potential(potential.descriptor, potential.architecture["hidden"], potential.architecture["activations"],
                          members=members, seeds=list(range(members)))
    normalisation = {k: v for k, v in potential.state_dict().items() if not k.startswith("networks")}
    committee.load_state_dict({**committee.state_dict(), **normalisation, "sigma_scale": torch.tensor([1.7, 2.3])})
    return committee


def fast_path_cases(data_dir):
    return {
        "periodic": atoms_of(read_structures(data_dir / "tio2/structure0822.xsf")[0]),
        "molecule": atoms_of(read_structures(data_dir / "ethanol/ethanol5.xyz")[0]),
        "isolated-atom": Atoms("OTiO", positions=[[0, 0, 0], [9.0, 0, 0], [10.8, 0.4, 0]]),
    }


@pytest.mark.parametrize("members", [1, 4], ids=["single", "committee"])
@pytest.mark.parametrize("case", ["periodic", "molecule", "isolated-atom"])
def test_the_analytic_path_equals_autograd(data_dir, case, members):
    atoms = fast_path_cases(data_dir)[case]
    species = sorted(set(atoms.get_chemical_symbols()))
    potential = committee_of(make_potential(species), members)
    fast, reference = Calculator(potential), AutogradCalculator(potential)
    properties = ["energy", "forces", *(["stress"] if atoms.pbc.any() else [])]
    properties += ["energy_std", "forces_std"] if members > 1 else []
    for name in properties:
        expected = reference.get_property(name, atoms)
        np.testing.assert_allclose(fast.get_property(name, atoms), expected, rtol=0, atol=1e-10, err_msg=name)
    assert np.abs(reference.get_property("forces", atoms)).max() > 1e-4  # forces that say something


def test_md_with_kept_neighbour_lists_equals_fresh_lists(tio2):
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    potential = make_potential(["O", "Ti"])
    kept, fresh = Calculator(potential, skin=1.0), Calculator(potential, skin=0.0)
    atoms = tio2.copy()
    atoms.rattle(0.02, seed=1)
    atoms.set_velocities(np.random.default_rng(0).normal(0, 0.02, atoms.positions.shape))
    atoms.calc = kept
    steps = []
    dynamics = VelocityVerlet(atoms, 1.0 * fs)
    dynamics.attach(lambda: steps.append((atoms.get_potential_energy(), atoms.get_forces().copy(), atoms.copy())))
    dynamics.run(20)
    for energy, forces, snapshot in steps:
        assert fresh.get_potential_energy(snapshot) == pytest.approx(energy, abs=1e-10)
        np.testing.assert_allclose(fresh.get_forces(snapshot), forces, rtol=0, atol=1e-10)
    assert kept.neighbors.builds < len(steps) / 2  # reused
    assert fresh.neighbors.builds == len(steps)


def test_new_atoms_or_a_new_cell_between_calls_are_evaluated_anew(data_dir, tio2):
    potential = make_potential(["O", "Ti"])
    calculator, reference = Calculator(potential), AutogradCalculator(potential)
    other = fast_path_cases(data_dir)["periodic"]
    strained = tio2.copy()
    strained.set_cell(tio2.cell * 1.02, scale_atoms=True)
    fewer = tio2[:-2]
    for atoms in (tio2, other, strained, fewer, tio2):
        assert calculator.get_potential_energy(atoms) == pytest.approx(reference.get_potential_energy(atoms), abs=1e-10)
        np.testing.assert_allclose(calculator.get_forces(atoms), reference.get_forces(atoms), rtol=0, atol=1e-10)


def test_energy_drift_in_nve_is_no_worse_than_the_autograd_paths(tio2):
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    def drift(calculator) -> float:
        atoms = tio2.copy()
        atoms.calc = calculator
        atoms.set_velocities(np.random.default_rng(3).normal(0, 0.01, atoms.positions.shape))
        totals = []
        dynamics = VelocityVerlet(atoms, 0.5 * fs)
        dynamics.attach(lambda: totals.append(atoms.get_total_energy()))
        dynamics.run(200)
        return abs(totals[-1] - totals[0])

    potential = make_potential(["O", "Ti"])
    reference = drift(AutogradCalculator(potential))
    assert drift(Calculator(potential)) <= max(1.05 * reference, 1e-9)


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
