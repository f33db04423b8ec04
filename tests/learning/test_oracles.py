"""Every oracle kind labels a tiny case; failures come back with their reason while the other labels go on."""

import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from aenet_exp.learning.oracles import Oracle, OracleError, check_oracle, label_all


def copper(seed: int):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def emt_reference(atoms):
    atoms = atoms.copy()
    atoms.calc = EMT()
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()


def run(oracle, structures):
    labels, failures = {}, {}
    label_all(oracle, structures, labels.__setitem__, failures.__setitem__)
    return labels, failures


@pytest.mark.parametrize("oracle", [Oracle("emt"), Oracle("ase", calculator="ase.calculators.emt.EMT", workers=2)],
                         ids=["emt", "ase-import-path"])
def test_calculators_label_energy_forces_and_stress(oracle):
    structures = [copper(k) for k in range(3)]
    labels, failures = run(oracle, structures)
    assert failures == {} and sorted(labels) == [0, 1, 2]
    for k, atoms in enumerate(structures):
        energy, forces, stress = emt_reference(atoms)
        assert labels[k].energy == pytest.approx(energy, abs=1e-12)
        np.testing.assert_allclose(labels[k].forces, forces, atol=1e-12)
        np.testing.assert_allclose(labels[k].stress, stress, atol=1e-12)



def test_a_calculator_without_stress_labels_a_periodic_cell_with_energy_and_forces():
    """ASE's SpringCalculator gives energy and forces only: its PropertyNotImplementedError for the stress of a
    periodic cell leaves the label without stress, not failed."""
    atoms = copper(0)
    ideal = bulk("Cu", "fcc", a=3.6, cubic=True).positions.tolist()
    oracle = Oracle("ase", calculator="ase.calculators.harmonic.SpringCalculator", kwargs={"ideal_positions": ideal,
                                                                                            "k": 2.0})
    labels, failures = run(oracle, [atoms])
    assert failures == {} and labels[0].stress is None
    displacement = atoms.positions - np.asarray(ideal)
    assert labels[0].energy == pytest.approx(0.5 * 2.0 * (displacement**2).sum(), abs=1e-12)
    np.testing.assert_allclose(labels[0].forces, -2.0 * displacement, atol=1e-12)

SCRIPT = """
import sys
from ase.io import read, write
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
atoms = read(sys.argv[1])
if len(sys.argv) > 3:
    mode = sys.argv[3]
    if mode == "fail":
        sys.exit("the DFT code crashed")
    if mode == "sleep":
        import time; time.sleep(30)
atoms.calc = EMT()
energy, forces = atoms.get_potential_energy(), atoms.get_forces()
if len(sys.argv) > 3 and sys.argv[3] == "nan":
    energy = float("nan")
atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=EMT().get_stress(atoms))
write(sys.argv[2], atoms, format="extxyz")
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "fake_dft.py"
    path.write_text(SCRIPT)
    return f"{sys.executable} {path}"


def test_a_command_labels_through_files(script):
    structures = [copper(k) for k in range(3)]
    labels, failures = run(Oracle("command", command=f"{script} {{input}} {{output}}", workers=2), structures)
    assert failures == {}
    for k, atoms in enumerate(structures):
        energy, forces, _ = emt_reference(atoms)
        assert labels[k].energy == pytest.approx(energy, abs=1e-6)
        np.testing.assert_allclose(labels[k].forces, forces, atol=1e-6)


@pytest.mark.parametrize("mode, reason, timeout", [
    ("fail", "the command exited with status 1: the DFT code crashed", 120),  # a time limit that a loaded
    ("nan", "unreadable output (ValueError: the energy is not finite (nan))", 120),  # machine does not reach
    ("sleep", "timed out after 1 s", 1),
])
def test_failed_commands_are_reported_and_the_others_labelled(script, mode, reason, timeout):
    oracle = Oracle("command", command=f"{script} {{input}} {{output}} {mode}", timeout=timeout)
    good = Oracle("command", command=f"{script} {{input}} {{output}}")
    labels, failures = run(oracle, [copper(0)])
    assert labels == {} and failures == {0: reason}
    assert run(good, [copper(0)])[1] == {}


def test_a_calculator_error_is_a_failed_label():
    """EMT has no parameters for Xe: the label fails with ASE's reason, the copper one is labelled."""
    xenon = Atoms("Xe2", positions=[[0, 0, 0], [0, 0, 4.0]])
    labels, failures = run(Oracle("emt"), [copper(0), xenon])
    assert list(labels) == [0]
    assert list(failures) == [1] and failures[1].startswith("NotImplementedError") and "Xe" in failures[1]


@pytest.mark.parametrize("oracle, message", [
    (Oracle("ase", calculator="ase.calculators.nowhere.Nothing"), "cannot import ase.calculators.nowhere"),
    (Oracle("ase", calculator="ase.calculators.emt.NoSuch"), "ase.calculators.emt has no calculator NoSuch"),
    (Oracle("ase", calculator="EMT"), "is not an import path"),
    (Oracle("command", command="run_dft.sh in.xyz {output}"), "must contain {input}"),
    (Oracle("command", command="run_dft.sh"), "must contain {input} and {output}"),
])
def test_unusable_oracles_are_refused_before_labelling(oracle, message):
    with pytest.raises(OracleError, match=message.replace("{", r"\{").replace("}", r"\}")):
        check_oracle(oracle)


def test_xtb_labels_a_molecule():
    pytest.importorskip("tblite.ase", reason="tblite is not installed (pip install 'aenet_exp[oracles]')")
    labels, failures = run(Oracle("xtb"), [molecule("H2O")])
    assert failures == {}
    assert labels[0].energy < -100  # GFN2-xTB's total energy of water, eV (about -137)
    assert labels[0].forces.shape == (3, 3) and labels[0].stress is None
