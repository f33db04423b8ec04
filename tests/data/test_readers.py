"""The structure readers (data/readers.py): XSF and ASE formats, sources, and malformed input."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from aenet_exp.data import DataError, Structure, read_structures, read_xsf

from helpers import DATA

TIO2 = DATA / "tio2"


SMALL_XSF = TIO2 / "structure1067.xsf"  # 6 atoms: Ti2O4


ETHANOL = DATA / "ethanol" / "ethanol5.xyz"


ISOLATED = DATA / "ethanol" / "isolated_atoms.xyz"


MOLECULE_XSF = """\
# total energy = -14.5 eV
ATOMS
O    0.000  0.000  0.119  0.0  0.0  -0.5
H    0.000  0.763 -0.477  0.0  0.1   0.25
1    0.000 -0.763 -0.477  0.0 -0.1   0.25
"""


CRYSTAL_XSF = """\
# total energy = -10.0 eV

CRYSTAL
PRIMVEC
  4.0 0.0 0.0
  0.0 4.0 0.0
  0.0 0.0 4.0
PRIMCOORD
2 1
Ti  0.0 0.0 0.0  0.1 0.2 0.3
O   2.0 2.0 2.0 -0.1 -0.2 -0.3
"""


def write(tmp_path: Path, text: str, name: str = "bad.xsf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def edit(text: str, line: int, new: str) -> str:
    """``text`` with 1-based ``line`` replaced by ``new``."""
    lines = text.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


def raises_at(path: Path, message: str, line: int | None = None):
    """Expect a DataError naming ``path`` (and ``line``) and containing ``message``."""
    where = re.escape(str(path)) + (f", line {line}" if line is not None else "")
    return pytest.raises(DataError, match=f"^{where}: .*{message}")


def test_read_xsf_periodic_matches_file_text():
    s = read_xsf(SMALL_XSF)
    assert isinstance(s, Structure)
    assert s.energy == pytest.approx(-4986.47542569)
    assert s.species == ("Ti", "Ti", "O", "O", "O", "O")
    np.testing.assert_allclose(
        s.cell,
        [[3.16171771, 0.0, 0.0], [1.90536070, 4.57286537, 0.0], [-0.00001215, -0.00006582, 5.06014094]],
    )
    assert s.pbc.all() and s.is_periodic
    np.testing.assert_allclose(s.positions[0], [2.53353304, 2.28639962, 2.53007041])
    np.testing.assert_allclose(s.positions[5], [1.32400384, 3.17759755, 1.54392239])
    np.testing.assert_allclose(s.forces[2], [-0.91594119, 0.73138708, 0.42862620])
    np.testing.assert_allclose(s.forces[:2], 0.0)
    assert s.source == str(SMALL_XSF) and s.frame == 0


def test_read_xsf_molecule_atoms_block(tmp_path):
    s = read_xsf(write(tmp_path, MOLECULE_XSF, "water.xsf"))
    assert s.species == ("O", "H", "H")  # atomic number 1 read as H
    assert s.cell is None and not s.pbc.any()
    assert s.energy == -14.5
    np.testing.assert_allclose(s.positions[1], [0.0, 0.763, -0.477])
    np.testing.assert_allclose(s.forces[:, 2], [-0.5, 0.25, 0.25])


def test_read_xsf_without_energy_or_forces(tmp_path):
    text = "# written by hand\nATOMS\nAr 0 0 0\nAr 0 0 3.8\n"
    s = read_xsf(write(tmp_path, text, "ar2.xsf"))
    assert s.energy is None and s.forces is None
    assert s.species == ("Ar", "Ar")


def test_read_extxyz_all_frames_with_labels():
    frames = read_structures(ETHANOL)
    assert len(frames) == 5
    assert [s.frame for s in frames] == list(range(5))
    first, second = frames[0], frames[1]
    assert first.species == ("C", "C", "O", "H", "H", "H", "H", "H", "H")
    assert first.energy == pytest.approx(-4209.4657843064815)
    assert second.energy == pytest.approx(-4209.4320204025025)
    np.testing.assert_allclose(first.positions[0], [0.40162460, 0.38569419, 0.07944170])
    np.testing.assert_allclose(first.forces[0], [-4.15950961, 0.10729389, 3.61777644])
    assert first.cell is None and not first.pbc.any()  # Lattice given, but pbc="F F F"
    assert first.source == str(ETHANOL)


def test_read_extxyz_energy_without_forces():
    atoms = read_structures(ISOLATED)
    assert [s.species for s in atoms] == [("H",), ("C",), ("O",), ("N",)]
    assert atoms[0].energy == pytest.approx(-13.568422383046626)
    assert all(s.forces is None for s in atoms)


def test_read_periodic_extxyz_keeps_cell(tmp_path):
    text = '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3 pbc="T T F"\nCu 0 0 0\n'
    (s,) = read_structures(write(tmp_path, text, "cu.extxyz"))
    np.testing.assert_allclose(s.cell, 3.0 * np.eye(3))
    assert s.pbc.tolist() == [True, True, False]
    assert s.energy is None and s.forces is None


def test_read_directory_sorted_and_skips_hidden_and_non_structure_files(tmp_path):
    for path in sorted(TIO2.glob("*.xsf"), reverse=True):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / ".hidden.xsf").write_text("garbage")
    (tmp_path / "LICENSE").write_text("MIT licence text")
    (tmp_path / "README.md").write_text("# notes")
    (tmp_path / "sub").mkdir()
    structures = read_structures(tmp_path)
    names = [Path(s.source).name for s in structures]
    assert names == sorted(p.name for p in TIO2.glob("*.xsf"))
    assert [s.n_atoms for s in structures] == [22, 23, 6]


def make_archive(tmp_path: Path, name: str = "set.tar.gz") -> Path:
    archive = tmp_path / name
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(TIO2.glob("*")):
            tar.add(path, arcname=f"dir_xsf/{path.name}")
        tar.add(ETHANOL, arcname="dir_xsf/ethanol5.xyz")
    return archive


def test_read_tar_archive_members_in_name_order(tmp_path):
    archive = make_archive(tmp_path)
    structures = read_structures(archive)
    assert [s.n_atoms for s in structures] == [9] * 5 + [22, 23, 6]
    assert structures[0].source == f"{archive}:dir_xsf/ethanol5.xyz"
    assert structures[-1].source == f"{archive}:dir_xsf/structure1067.xsf"
    direct = read_xsf(SMALL_XSF)
    np.testing.assert_array_equal(structures[-1].positions, direct.positions)
    assert structures[-1].energy == direct.energy


def test_malformed_member_of_archive_is_named(tmp_path):
    archive = tmp_path / "bad.tar.gz"
    bad = write(tmp_path, edit(CRYSTAL_XSF, 10, "Ti  0.0 zero 0.0  0.1 0.2 0.3"), "s1.xsf")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bad, arcname="s1.xsf")
    with raises_at(Path(f"{archive}:s1.xsf"), "could not parse 'zero'", 10):
        read_structures(archive)


def test_corrupt_archive(tmp_path):
    archive = write(tmp_path, "not a tarball", "broken.tar.gz")
    with raises_at(archive, "cannot read archive"):
        read_structures(archive)


def test_read_glob_sorted():
    structures = read_structures(str(TIO2 / "structure*.xsf"))
    assert [Path(s.source).name for s in structures] == [
        "structure0407.xsf",
        "structure0822.xsf",
        "structure1067.xsf",
    ]


def test_read_list_mixes_formats_in_order():
    structures = read_structures([SMALL_XSF, str(ETHANOL), (TIO2 / "structure0822.xsf")])
    assert [s.n_atoms for s in structures] == [6, 9, 9, 9, 9, 9, 23]
    assert [s.frame for s in structures] == [0, 0, 1, 2, 3, 4, 0]


def test_truncated_file(tmp_path):
    text = "\n".join(CRYSTAL_XSF.splitlines()[:6]) + "\n"  # stops after 2 PRIMVEC rows
    path = write(tmp_path, text)
    with raises_at(path, "unexpected end of file, expected 3 lattice vector rows after PRIMVEC", 6):
        read_xsf(path)


def test_missing_primvec_row(tmp_path):
    lines = CRYSTAL_XSF.splitlines()
    path = write(tmp_path, "\n".join(lines[:6] + lines[7:]) + "\n")  # drop the third row
    with raises_at(path, "expected 3 lattice vector rows after PRIMVEC \\(line 4\\), got 'PRIMCOORD'", 7):
        read_xsf(path)


def test_wrong_atom_count(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 9, "3 1"))
    with raises_at(path, "expected 3 atoms after PRIMCOORD, found 2", 9):
        read_xsf(path)


def test_bad_count_line(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 9, "two 1"))
    with raises_at(path, "expected the atom count line 'N 1' after PRIMCOORD", 9):
        read_xsf(path)


def test_missing_crystal_keyword(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 3, "CRISTAL"))
    with raises_at(path, "expected 'CRYSTAL' or 'ATOMS', got 'CRISTAL'", 3):
        read_xsf(path)


def test_non_number(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 10, "Ti  0.0 abc 0.0  0.1 0.2 0.3"))
    with raises_at(path, "could not parse 'abc' as a number in positions", 10):
        read_xsf(path)


def test_non_number_energy(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 1, "# total energy = lots eV"))
    with raises_at(path, "could not parse 'lots' as a number in energy", 1):
        read_xsf(path)


def test_nan_in_positions(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 11, "O   2.0 NaN 2.0 -0.1 -0.2 -0.3"))
    with raises_at(path, "NaN/inf in positions", 11):
        read_xsf(path)


def test_nan_in_forces(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 10, "Ti  0.0 0.0 0.0  0.1 nan 0.3"))
    with raises_at(path, "NaN/inf in forces", 10):
        read_xsf(path)


def test_inf_in_lattice(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 5, "  inf 0.0 0.0"))
    with raises_at(path, "NaN/inf in lattice vectors", 5):
        read_xsf(path)


def test_inf_in_energy(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 1, "# total energy = -inf eV"))
    with raises_at(path, "NaN/inf in energy", 1):
        read_xsf(path)


def test_unknown_element(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 11, "Xx  2.0 2.0 2.0 -0.1 -0.2 -0.3"))
    with raises_at(path, "unknown element 'Xx'", 11):
        read_xsf(path)


def test_unknown_atomic_number(tmp_path):
    path = write(tmp_path, edit(MOLECULE_XSF, 3, "0 0.0 0.763 -0.477 0.0 0.1 0.25"))
    with raises_at(path, "unknown element '0'", 3):
        read_xsf(path)


def test_inconsistent_force_columns(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 11, "O   2.0 2.0 2.0"))
    with raises_at(path, "atom rows must all have forces or none: line 10 has 7 columns, this one 4", 11):
        read_xsf(path)


def test_wrong_column_count(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 10, "Ti  0.0 0.0 0.0  0.1"))
    with raises_at(path, "expected 7 columns 'symbol x y z fx fy fz' or 4 columns 'symbol x y z', got 5", 10):
        read_xsf(path)


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    with raises_at(path, "empty file"):
        read_xsf(path)


def test_comments_only(tmp_path):
    path = write(tmp_path, "# total energy = -1.0 eV\n\n")
    with raises_at(path, "unexpected end of file, expected 'CRYSTAL' or 'ATOMS'", 2):
        read_xsf(path)


def test_atoms_block_without_atoms(tmp_path):
    path = write(tmp_path, "ATOMS\n")
    with raises_at(path, "expected atom rows after ATOMS", 1):
        read_xsf(path)


def test_binary_junk(tmp_path):
    path = tmp_path / "junk.xsf"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01")
    with raises_at(path, "not a text file"):
        read_xsf(path)


def test_binary_junk_through_ase(tmp_path):
    path = tmp_path / "junk.xyz"
    path.write_bytes(b"\x00\x01\xff\xfe")
    with raises_at(path, "ASE could not read the file"):
        read_structures(path)


def test_zero_volume_cell_names_file(tmp_path):
    path = write(tmp_path, edit(CRYSTAL_XSF, 7, "  0.0 0.0 0.0"))
    with raises_at(path, "periodic cell has zero volume"):
        read_xsf(path)


def test_nonexistent_path(tmp_path):
    missing = tmp_path / "nope.xsf"
    with raises_at(missing, "no such file, directory or glob match"):
        read_structures(missing)


def test_read_xsf_nonexistent_path(tmp_path):
    missing = tmp_path / "nope.xsf"
    with raises_at(missing, "cannot read file"):
        read_xsf(missing)


def test_glob_matching_nothing(tmp_path):
    pattern = str(tmp_path / "*.xsf")
    with raises_at(Path(pattern), "no such file, directory or glob match"):
        read_structures(pattern)


def test_empty_directory(tmp_path):
    with raises_at(tmp_path, "directory contains no files"):
        read_structures(tmp_path)


def test_list_with_missing_entry_names_it(tmp_path):
    missing = tmp_path / "gone.xyz"
    with raises_at(missing, "no such file"):
        read_structures([SMALL_XSF, missing])


def test_unrecognised_format(tmp_path):
    path = write(tmp_path, "just some prose\n", "notes.txt")
    with raises_at(path, "ASE could not read the file: UnknownFileTypeError"):
        read_structures(path)


def ethanol_with(tmp_path: Path, line: int, old: str, new: str) -> Path:
    """A copy of the 5-frame ethanol file with ``old`` replaced by ``new`` on 1-based ``line``."""
    lines = ETHANOL.read_text().splitlines()
    assert old in lines[line - 1]
    return write(tmp_path, edit(ETHANOL.read_text(), line, lines[line - 1].replace(old, new, 1)), "eth.xyz")


def test_extxyz_non_number_names_frame_and_line(tmp_path):
    path = ethanol_with(tmp_path, 14, "0.40890702", "abc")  # frame 1, first atom
    with raises_at(path, "frame 1: ASE could not read the file: ValueError: .*'abc'", 14):
        read_structures(path)


def test_extxyz_unknown_element_names_line(tmp_path):
    path = ethanol_with(tmp_path, 25, "C ", "Xx")  # frame 2, first atom
    with raises_at(path, "frame 2: .*KeyError: 'Xx'", 25):
        read_structures(path)


def test_extxyz_bad_header(tmp_path):
    path = ethanol_with(tmp_path, 23, "9", "x")  # atom count of frame 2
    with raises_at(path, "Expected xyz header", 23):
        read_structures(path)


def test_extxyz_truncated_frame(tmp_path):
    lines = ETHANOL.read_text().splitlines()[:30]  # frame 2 has 6 of its 9 atoms
    path = write(tmp_path, "\n".join(lines) + "\n", "eth.xyz")
    with raises_at(path, "frame 2: .*Frame has 6 atoms, expected 9"):
        read_structures(path)


def test_extxyz_nan_position_names_frame(tmp_path):
    path = ethanol_with(tmp_path, 36, "0.20950472", "nan")  # frame 3
    with raises_at(path, "frame 3: positions contain NaN or inf"):
        read_structures(path)


def test_extxyz_nan_energy_in_frame_0_names_frame(tmp_path):
    path = ethanol_with(tmp_path, 2, "energy=-4209.4657843064815", "energy=nan")
    with raises_at(path, "frame 0: energy is NaN or inf"):
        read_structures(path)



def read_with_timeout(path, timeout: float = 60) -> subprocess.CompletedProcess:
    """``read_structures(path)`` in a subprocess: a reader that hangs or exhausts memory must not take the tests along."""
    code = f"from aenet_exp.data import read_structures; read_structures({str(path)!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_only_regular_files_are_read(tmp_path, kind):
    path = tmp_path / "structure.xsf"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer forever
    else:
        path.symlink_to("/dev/zero")  # reading it would fill the memory
    done = read_with_timeout(path)
    assert done.returncode == 1 and f"DataError: {path}: not a regular file" in done.stderr


def test_a_file_above_the_size_limit_is_named(tmp_path, monkeypatch):
    import aenet_exp.data.readers as readers

    monkeypatch.setattr(readers, "MAX_FILE_BYTES", 100)
    with pytest.raises(DataError, match=rf"^{re.escape(str(SMALL_XSF))}: \d+ bytes, more than the 100"):
        read_structures(SMALL_XSF)


def test_extxyz_energy_that_is_not_a_number_names_the_frame(tmp_path):
    lines = ETHANOL.read_text().splitlines()[:22]
    lines[12] = re.sub(r"energy=\S+", "energy=abc", lines[12])
    path = write(tmp_path, "\n".join(lines) + "\n", "bad.xyz")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: frame 1: energy: expected numbers, got 'abc'"):
        read_structures(path)
