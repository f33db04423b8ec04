"""ænet's Fortran predict.x on an exported potential: its input and output here; against the calculator when the
programs are there (AENET_PREDICT, AENET_NNASCII2BIN; docs/inference.md says how to build them)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from aenet_exp.calculator import Calculator
from aenet_exp.data import read_structures
from aenet_exp.export.aenet_ascii import write_aenet_ascii
from aenet_exp.export.aenet_fortran import predict_input, programs, read_output, run_predict, to_binary, write_xsf
from aenet_exp.model import Potential

from helpers import train

OUTPUT = """
 Structure number  : 1
 File name         : cell.xsf
 --------------------------------------------------------------------------------------
 Ti      4.513527      7.043559      2.219036     -0.029885     -0.137879      0.131812
 O       4.439118      5.535999      0.955189      0.029236      0.288783      0.190930

 Cohesive energy            :         -183.58406557 eV
 Total energy               :       -19507.96715273 eV
 Mean force (must be zero)  :      0.000000      0.000000     -0.000000
 Structure number  : 2
 File name         : other.xsf
 O       1.0      2.0      3.0      0.5      -0.25      0.125

 Total energy               :       -432.5 eV
"""


def test_the_input_quotes_network_paths_and_lists_every_file(tmp_path):
    text = predict_input({"O": tmp_path / "O.nn", "Ti": tmp_path / "Ti.nn"}, [tmp_path / "a.xsf"] * 2)
    assert text.splitlines()[:4] == ["TYPES", "2", "O", "Ti"]
    assert f'  O  "{tmp_path / "O.nn"}"' in text and "FORCES" in text
    assert text.splitlines()[-3:] == ["2", str(tmp_path / "a.xsf"), str(tmp_path / "a.xsf")]
    assert "FORCES" not in predict_input({"O": tmp_path / "O.nn"}, [], forces=False)


def test_xsf_files_name_the_species(tmp_path):
    path = write_xsf(tmp_path / "a.xsf", ["Ti", "O"], np.eye(2, 3), np.diag([5.0, 6.0, 7.0]))
    assert path.read_text().splitlines() == [
        "CRYSTAL", "PRIMVEC", "5.0000000000 0.0000000000 0.0000000000", "0.0000000000 6.0000000000 0.0000000000",
        "0.0000000000 0.0000000000 7.0000000000", "PRIMCOORD", "2 1", "Ti 1.0000000000 0.0000000000 0.0000000000",
        "O 0.0000000000 1.0000000000 0.0000000000"]
    assert write_xsf(tmp_path / "m.xsf", ["H"], np.zeros((1, 3)), None).read_text() == "ATOMS\nH 0.0000000000 0.0000000000 0.0000000000\n"


def test_the_output_gives_each_structures_energy_and_forces():
    first, second = read_output(OUTPUT)
    assert first.energy == -19507.96715273 and second.energy == -432.5
    np.testing.assert_array_equal(first.forces, [[-0.029885, -0.137879, 0.131812], [0.029236, 0.288783, 0.190930]])
    np.testing.assert_array_equal(second.forces, [[0.5, -0.25, 0.125]])


@pytest.mark.slow
def test_predict_x_gives_the_calculators_energies_and_forces(fast_config, tmp_path, data_dir):
    found = programs()
    if found is None:
        pytest.skip("ænet's predict.x and nnASCII2bin.x not found: set AENET_PREDICT and AENET_NNASCII2BIN "
                    "(docs/inference.md says how to build them)")
    predict, converter = found
    train(fast_config("precision=float64", "iterations=3", "force.weight=0.3"), tmp_path / "run")
    potential = Potential.load(tmp_path / "run" / "potential.pt")
    networks = to_binary(converter, write_aenet_ascii(potential, tmp_path / "aenet"))
    structures = [read_structures(data_dir / "tio2" / name)[0] for name in ("structure0407.xsf", "structure0822.xsf")]
    files = [write_xsf(tmp_path / f"cell{k}.xsf", s.species, s.positions, s.cell) for k, s in enumerate(structures)]
    printed = run_predict(predict, predict_input(networks, files), tmp_path)
    calculator = Calculator(potential)
    for structure, result in zip(structures, printed):
        atoms = Atoms(structure.species, positions=structure.positions, cell=structure.cell, pbc=True)
        assert abs(result.energy - calculator.get_potential_energy(atoms)) / len(atoms) <= 1e-6
        np.testing.assert_allclose(result.forces, calculator.get_forces(atoms), rtol=0, atol=1e-5)

