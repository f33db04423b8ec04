"""The HDF5 structure database (data/hdf5.py): building it and reading it back."""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import re
import weakref
from pathlib import Path

import h5py
import numpy as np
import pytest

import aenet_exp.data.hdf5 as hdf5
from aenet_exp.data import (
    DataError,
    Structure,
    StructureDatabase,
    build_database,
    read_structures,
)

from helpers import DATA

SMALL = DATA / "tio2-small"


ETHANOL = DATA / "ethanol" / "ethanol5.xyz"


UNLABELLED_XSF = """\
ATOMS
O  0.000  0.000  0.119
H  0.000  0.763 -0.477
H  0.000 -0.763 -0.477
"""


@pytest.fixture
def source(tmp_path: Path) -> list[Path]:
    """16 periodic TiO2 structures, 5 ethanol frames and one molecule without energy or forces."""
    unlabelled = tmp_path / "inputs" / "water.xsf"
    unlabelled.parent.mkdir()
    unlabelled.write_text(UNLABELLED_XSF)
    return [SMALL, ETHANOL, unlabelled]


def assert_same(got: Structure, expected: Structure) -> None:
    """Every field equal, floats bit for bit."""
    assert got.species == expected.species
    np.testing.assert_array_equal(got.positions, expected.positions, strict=True)
    for name in ("cell", "forces"):
        if getattr(expected, name) is None:
            assert getattr(got, name) is None
        else:
            np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), strict=True)
    np.testing.assert_array_equal(got.pbc, expected.pbc, strict=True)
    assert (got.energy, got.source, got.frame) == (expected.energy, expected.source, expected.frame)


def not_a_database(path: Path):
    return pytest.raises(DataError, match=f"^{re.escape(str(path))}: .*expected an aenet_exp structure database")


@pytest.mark.parametrize("compression", ["gzip", "lzf", None])
def test_round_trip_matches_read_structures(tmp_path, source, compression):
    path = tmp_path / "db.h5"
    expected = read_structures(source)
    assert build_database(source, path, compression=compression) == len(expected) == 22
    with StructureDatabase(path) as db:
        assert len(db) == len(expected)
        for got, want in zip(db, expected, strict=True):
            assert_same(got, want)
        assert_same(db[-1], expected[-1])
        assert [s.frame for s in db[16:21]] == list(range(5))
        with pytest.raises(IndexError):
            db[len(expected)]


def test_blocks_written_across_files_keep_offsets(tmp_path, source, monkeypatch):
    monkeypatch.setattr(hdf5, "_BLOCK_STRUCTURES", 3)
    path = tmp_path / "db.h5"
    build_database(source, path, compression=None)
    for got, want in zip(StructureDatabase(path), read_structures(source), strict=True):
        assert_same(got, want)


def test_build_reads_one_file_at_a_time(tmp_path, source, monkeypatch):
    calls = []

    def recording(path):
        calls.append(path)
        return read_structures(path)

    monkeypatch.setattr(hdf5, "read_structures", recording)
    build_database(source, tmp_path / "db.h5")
    assert calls == sorted(SMALL.glob("*.xsf")) + source[1:]


def test_metadata_columns_without_reading_structures(tmp_path, source, monkeypatch):
    path = tmp_path / "db.h5"
    build_database(source, path)
    expected = read_structures(source)
    monkeypatch.setattr(StructureDatabase, "_read", lambda self, i: pytest.fail("read a structure"))
    db = StructureDatabase(path)
    energies = [np.nan if s.energy is None else s.energy for s in expected]
    np.testing.assert_array_equal(db.energies, energies)
    np.testing.assert_array_equal(db.n_atoms, [s.n_atoms for s in expected])
    np.testing.assert_array_equal(db.has_forces, [s.forces is not None for s in expected])
    max_force = [np.nan if s.forces is None else np.abs(s.forces).max() for s in expected]
    np.testing.assert_array_equal(db.max_abs_force, max_force)
    np.testing.assert_array_equal(db.frames, [s.frame for s in expected])
    assert db.sources == [s.source for s in expected]
    assert db.species == ["Ti", "O", "C", "H"]
    assert np.isnan(db.energies[-1]) and not db.has_forces[-1]


@pytest.mark.parametrize("read", [StructureDatabase.composition, lambda db: db[2]], ids=["composition", "structure"])
def test_a_species_index_outside_the_species_is_a_data_error_naming_the_structure(tmp_path, source, read):
    path = tmp_path / "db.h5"
    build_database(source, path)
    with h5py.File(path, "r+") as h5:
        h5["species_index"][int(h5["atom_offset"][2])] = 7  # the database has 4 species
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: structure 2 \(.+ frame \d+\): species index 7 is "
                                        r"outside the database's 4 species$"):
        read(StructureDatabase(path))


def test_file_holds_arrays_only(tmp_path, source):
    path = tmp_path / "db.h5"
    build_database(source, path)
    found = {}

    def record(name: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            found[name] = item.dtype

    with h5py.File(path, "r") as h5:
        h5.visititems(record)
        assert (h5.attrs["format"], h5.attrs["format_version"]) == ("aenet_exp-structures", 2)
        assert (h5.attrs["length_unit"], h5.attrs["energy_unit"], h5.attrs["force_unit"]) == ("Å", "eV", "eV/Å")
        assert h5["positions"].maxshape == (None, 3)
    objects = {name for name, dtype in found.items() if dtype.kind in "OV"}
    assert objects == {"sources"} and h5py.check_string_dtype(found["sources"]).encoding == "utf-8"
    assert len(found) == 16  # version 2 adds min_distance


def test_failing_build_leaves_no_file(tmp_path):
    bad = tmp_path / "bad.xsf"
    bad.write_text("CRYSTAL\nPRIMVEC\n1 0 0\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=re.escape(str(bad))):
        build_database([SMALL / "structure0001.xsf", bad, SMALL / "structure0002.xsf"], out / "db.h5")
    assert list(out.iterdir()) == []


def test_write_database_streams_an_iterable(tmp_path, monkeypatch):
    """A generator is written in one pass, with at most one block of its structures alive at a time."""
    monkeypatch.setattr(hdf5, "_BLOCK_STRUCTURES", 3)
    expected = read_structures(SMALL)
    refs: list[weakref.ref] = []
    most_alive = 0

    def fresh_copies():
        nonlocal most_alive
        for s in expected:
            copy = dataclasses.replace(s)  # a new object that only the writer can keep alive
            refs.append(weakref.ref(copy))
            most_alive = max(most_alive, sum(r() is not None for r in refs))
            yield copy

    path = tmp_path / "db.h5"
    assert hdf5.write_database(fresh_copies(), path, compression="lzf") == 16
    assert most_alive == 3
    for got, want in zip(StructureDatabase(path), expected, strict=True):
        assert_same(got, want)


def test_write_database_failing_iterable_leaves_no_file(tmp_path):
    def broken():
        yield from read_structures(SMALL)[:5]
        raise DataError("generator", "broken after 5 structures")

    with pytest.raises(DataError, match="broken after 5"):
        hdf5.write_database(broken(), tmp_path / "db.h5")
    assert list(tmp_path.iterdir()) == []


def test_rebuild_replaces_atomically(tmp_path, source):
    path = tmp_path / "db.h5"
    build_database(ETHANOL, path)
    old = StructureDatabase(path, cache_size=0)
    assert old[0].source == str(ETHANOL)  # holds the old file open
    assert build_database(SMALL, path) == 16
    assert old[0].source == str(ETHANOL) and len(StructureDatabase(path)) == 16

    bad = tmp_path / "inputs" / "bad.xsf"
    bad.write_text("ATOMS\nTi 0 0\n")
    with pytest.raises(DataError, match=re.escape(str(bad))):
        build_database([ETHANOL, bad], path)
    assert len(StructureDatabase(path)) == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.h5", "inputs"]


def test_not_a_database_raises_data_error(tmp_path, source):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["positions"] = np.zeros((2, 3))
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF but not really" * 10)
    for path in (other, garbage, tmp_path / "missing.h5"):
        with not_a_database(path):
            StructureDatabase(path)

    incomplete = tmp_path / "incomplete.h5"
    build_database(source, incomplete)
    with h5py.File(incomplete, "a") as h5:
        del h5["forces"]
    with not_a_database(incomplete):
        StructureDatabase(incomplete)


def test_refuses_object_datasets(tmp_path, source):
    path = tmp_path / "db.h5"
    build_database(source, path)
    with h5py.File(path, "a") as h5:
        h5["extra"] = np.void(pickle.dumps({"a": 1}))
    with pytest.raises(DataError, match="extra.*refusing"):
        StructureDatabase(path)


def test_invalid_compression_raises_value_error(tmp_path):
    for kwargs, name in (({"compression": "zstd"}, "compression"), ({"compression_level": 10}, "compression_level")):
        with pytest.raises(ValueError, match=f"^{name} must"):
            build_database(SMALL, tmp_path / "db.h5", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_only_on_a_terminal(tmp_path, capsys):
    build_database(SMALL, tmp_path / "db.h5", show_progress=True)
    assert capsys.readouterr().err == ""


def test_lru_cache_is_bounded(tmp_path, source, monkeypatch):
    path = tmp_path / "db.h5"
    build_database(source, path)
    reads = []
    original = StructureDatabase._read
    monkeypatch.setattr(StructureDatabase, "_read", lambda self, i: reads.append(i) or original(self, i))
    db = StructureDatabase(path, cache_size=2)
    first = [db[i] for i in range(5)]
    assert db[4] is first[4] and db[3] is first[3]
    assert_same(db[0], first[0])
    assert reads == [0, 1, 2, 3, 4, 0]
    assert len(db._cache) == 2


def test_pickles_without_its_handle(tmp_path, source):
    path = tmp_path / "db.h5"
    build_database(source, path)
    db = StructureDatabase(path)
    expected = db[3]
    copy = pickle.loads(pickle.dumps(db))
    assert copy._h5 is None and not copy._cache
    assert_same(copy[3], expected)


def _read_in_child(db: StructureDatabase, indices: list[int], results) -> None:
    results.put([db[i] for i in indices])


def test_forked_child_reopens_the_file(tmp_path, source):
    path = tmp_path / "db.h5"
    build_database(source, path)
    db = StructureDatabase(path, cache_size=0)
    expected = [db[i] for i in (0, 17, 21)]  # the parent's handle is open across the fork
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_read_in_child, args=(db, [0, 17, 21], results))
    child.start()
    got = results.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    for g, e in zip(got, expected, strict=True):
        assert_same(g, e)
    assert_same(db[17], expected[1])



# ---------------------------------------------------------------- Taylor children (augment=taylor)


def test_build_with_taylor_children_records_their_provenance(tmp_path, source):
    """Each structure read is followed by its children; ``parent``, ``child_index`` and ``displacement_rms``
    say where each comes from, and the children equal those made in memory bit for bit."""
    from aenet_exp.data.taylor import TaylorExpansion

    expansion = TaylorExpansion(children=2, displacement=0.04, seed=11)
    read = read_structures(source)
    path = tmp_path / "children.h5"
    with pytest.warns(UserWarning, match=r"^augment: 1 of 22 structures have no forces"):
        count = build_database(source, path, augmentation=expansion)
    with_forces = [k for k, s in enumerate(read) if s.forces is not None]
    assert count == len(read) + 2 * len(with_forces)
    with h5py.File(path, "r") as h5:
        assert h5.attrs["format_version"] == 3
        assert (h5.attrs["augment"], h5.attrs["augment_children"], h5.attrs["augment_displacement"],
                h5.attrs["augment_seed"]) == ("taylor", 2, 0.04, 11)
        parent, child_index, rms = h5["parent"][()], h5["child_index"][()], h5["displacement_rms"][()]
    db = StructureDatabase(path)
    assert db.augmentation == expansion
    np.testing.assert_array_equal(db.parents, parent)
    originals = np.flatnonzero(parent == -1)
    assert len(originals) == len(read) and np.isnan(rms[originals]).all() and (child_index[originals] == -1).all()
    for key, row in enumerate(originals):
        assert_same(db[int(row)], read[key])
        stored = np.flatnonzero(parent == row)
        made = expansion.children_of(read[key], key)
        assert len(stored) == len(made) and list(child_index[stored]) == [c.index for c in made]
        for r, child in zip(stored, made):
            assert_same(db[int(r)], child.structure)
            assert db[int(r)].forces is None and not db.has_forces[r]
            assert rms[r] == child.displacement_rms
            delta = db[int(r)].positions - read[key].positions
            assert rms[r] == pytest.approx(np.sqrt(np.mean(delta**2)), rel=1e-9)


def test_build_with_taylor_children_but_no_forces_names_augment_and_writes_nothing(tmp_path):
    from aenet_exp.data.taylor import TaylorExpansion
    from aenet_exp.errors import ConfigError

    water = tmp_path / "water.xsf"
    water.write_text("# total energy = -14.2 eV\n" + UNLABELLED_XSF)
    path = tmp_path / "none.h5"
    with pytest.raises(ConfigError, match=r"^augment: is taylor, but none of the 1 structures has forces"):
        build_database(water, path, augmentation=TaylorExpansion(2, 0.02, 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["water.xsf"]


def test_a_database_without_children_has_no_parents(tmp_path, source):
    path = tmp_path / "plain.h5"
    build_database(source, path)
    db = StructureDatabase(path)
    assert db.augmentation is None and (db.parents == -1).all()
