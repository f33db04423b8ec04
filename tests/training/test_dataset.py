"""data.* (training/dataset.py): reading, references, filters, the seeded split, databases, external test sets."""

from __future__ import annotations

import numpy as np
import pytest

from aenet_exp.build.training import prepared_data as prepare_data
from aenet_exp.config.validation import ConfigError, validate
from aenet_exp.data import DataError, read_structures
from aenet_exp.training.dataset import split

from helpers import DATA, E_ATOMIC, SMALL, train


def test_external_test_set(fast_config, tmp_path):
    test_file = DATA / "tio2" / sorted(p.name for p in (DATA / "tio2").glob("*.xsf"))[0]
    metrics, rec = train(fast_config(f"data.test_path={test_file}", "data.testpercent=0"), tmp_path)
    assert rec.facts["dataset.train_structures"] == 16 and rec.facts["dataset.test_structures"] == 1
    assert "final/test/energy_rmse" in metrics
    with pytest.raises(ConfigError, match="^data.testpercent: is 25.0, but data.test_path gives the test set"):
        validate(fast_config(f"data.test_path={test_file}"))


def test_split_is_seeded():
    a, b = split(50, 20, seed=1), split(50, 20, seed=1)
    assert np.array_equal(a[0], b[0]) and len(a[1]) == 10
    assert not np.array_equal(split(50, 20, seed=2)[1], a[1])
    assert len(split(50, 0, seed=1)[1]) == 0


def test_testpercent_and_seed_change_the_split(fast_config):
    one = prepare_data(fast_config("data.testpercent=50"))
    assert len(one.test) == 8
    other = prepare_data(fast_config("data.testpercent=50", "seed=7"))
    assert set(one.test) != set(other.test)


def test_cohesive_needs_every_species(fast_config, data_dir):
    ethanol = data_dir / "ethanol" / "ethanol5.xyz"  # C, H, O; the default references cover O and Ti
    with pytest.raises(ConfigError, match=r"^normalization.E_atomic: .*\['C', 'H'\]"):
        prepare_data(fast_config(f"data.path={ethanol}"))
    with pytest.raises(ConfigError, match=r"^normalization.E_atomic: .*\['O', 'Ti'\]"):
        prepare_data(fast_config("data.E_atomic=null"))
    total = prepare_data(fast_config("data.E_atomic=null", "normalization.energy_target=total"))
    assert total.atomic_energies is None


def test_e_atomic_from_isolated_atoms_file(fast_config, data_dir):
    iso = data_dir / "ethanol" / "isolated_atoms.xyz"
    data = prepare_data(fast_config(f"data.path={data_dir / 'ethanol' / 'ethanol5.xyz'}", f"normalization.E_atomic={iso}"))
    assert data.atomic_energies == pytest.approx({"C": -1025.2770951782686, "H": -13.568422383046626, "O": -2035.5709809589698})
    assert data.species == ["C", "H", "O"]


def test_max_energy_and_max_forces_filter(fast_config):
    structures = read_structures(SMALL)
    per_atom = [(s.energy - sum(E_ATOMIC[x] for x in s.species)) / s.n_atoms for s in structures]
    threshold = float(np.median(per_atom))
    data = prepare_data(fast_config(f"data.max_energy={threshold}"))
    assert data.removed["max_energy"] == sum(e > threshold for e in per_atom)
    largest = sorted(np.abs(s.forces).max() for s in structures)
    data = prepare_data(fast_config(f"data.max_forces={largest[-3]}"))
    assert data.removed["max_forces"] == 2 and len(data.structures) == 14


def test_filters_removing_everything_is_a_data_error(fast_config):
    with pytest.raises(DataError, match="no structure left"):
        prepare_data(fast_config("data.max_energy=-1000"))


def test_overlapping_atoms_are_reported_by_file(fast_config, tmp_path):
    bad = tmp_path / "overlap.xsf"
    bad.write_text(
        "# total energy = -10.0 eV\nCRYSTAL\nPRIMVEC\n4 0 0\n0 4 0\n0 0 4\nPRIMCOORD\n3 1\n"
        "Ti 0 0 0\nO 2 2 2\nO 2.05 2 2\n"
    )
    with pytest.raises(DataError, match=rf"^{bad}: frame 0: atoms 1 \(O\) and 2 \(O\) are 0.050 Å apart"):
        prepare_data(fast_config(f"data.path={bad}"))


@pytest.mark.parametrize("workers, sampling", [(0, "uniform"), (2, "uniform"), (0, "error_weighted")])
def test_database_training_equals_in_memory(fast_config, tmp_path, workers, sampling):
    base = ["force=subsampled", "force.fraction=0.5", "precision=float64", "iterations=2",
            f"dataloader.num_workers={workers}", f"sampling={sampling}"]
    memory, _ = train(fast_config(*base), tmp_path / "m")
    database = tmp_path / "set.h5"
    lazy, _ = train(fast_config(*base, f"data.database={database}", "data.in_memory_cache_size=4"), tmp_path / "d")
    assert database.is_file()
    for key in (k for k in memory if not k.startswith("time/")):
        assert lazy[key] == pytest.approx(memory[key], rel=1e-10), key


def test_database_filters_use_columns(fast_config, tmp_path):
    from aenet_exp.data.hdf5 import build_database

    database = tmp_path / "set.h5"
    build_database(SMALL, database)
    structures = read_structures(SMALL)
    largest = sorted(np.abs(s.forces).max() for s in structures)
    data = prepare_data(fast_config(f"data.database={database}", f"data.max_forces={largest[-3]}"))
    assert data.removed["max_forces"] == 2 and len(data.structures) == 14
    assert data.structures[0].n_atoms == data.columns.n_atoms[0]



OVERLAPPING = (
    "# total energy = -10.0 eV\nCRYSTAL\nPRIMVEC\n4 0 0\n0 4 0\n0 0 4\nPRIMCOORD\n3 1\nTi 0 0 0\nO 2 2 2\nO 2.05 2 2\n"
)


@pytest.mark.parametrize("version", [2, 1])
def test_a_database_of_overlapping_atoms_is_refused_like_files_are(fast_config, tmp_path, version):
    """The database records each structure's closest pair at build time (version 1 databases are checked by reading)."""
    import shutil

    import h5py

    from aenet_exp.data.hdf5 import build_database

    for path in sorted(SMALL.glob("*.xsf"))[:4]:
        shutil.copy(path, tmp_path / path.name)
    bad = tmp_path / "zz_overlap.xsf"
    bad.write_text(OVERLAPPING)
    database = tmp_path / "set.h5"
    build_database(tmp_path, database)
    if version == 1:
        with h5py.File(database, "a") as h5:
            del h5["min_distance"]
            h5.attrs["format_version"] = 1
    with pytest.raises(DataError, match=rf"^{bad}: frame 0: atoms 1 \(O\) and 2 \(O\) are 0.050 Å apart"):
        prepare_data(fast_config(f"data.database={database}"))


def scaled_copy(tmp_path, factor: float, which: slice) -> list:
    """The small TiO2 files with the energies of the structures ``which`` multiplied by ``factor``."""
    import re

    names = []
    for k, path in enumerate(sorted(SMALL.glob("*.xsf"))):
        text = path.read_text()
        if k in range(16)[which]:
            energy = float(re.search(r"total energy = (\S+)", text).group(1))
            text = re.sub(r"total energy = \S+", f"total energy = {energy * factor!r}", text)
        (tmp_path / path.name).write_text(text)
        names.append(path.name)
    return names


def test_an_energy_far_from_the_others_is_named(fast_config, tmp_path):
    from aenet_exp.errors import AenetWarning

    names = scaled_copy(tmp_path, 1e6, slice(5, 6))
    with pytest.warns(AenetWarning, match=rf"^data: 1 structures have cohesive energies beyond ±50 eV/atom .*{names[5]}"):
        prepare_data(fast_config(f"data.path={tmp_path}"))


def test_energies_in_the_wrong_units_are_told(fast_config, tmp_path):
    from aenet_exp.errors import AenetWarning

    scaled_copy(tmp_path, 1000.0, slice(None))
    with pytest.warns(AenetWarning, match=r"16 structures have cohesive energies beyond ±50 eV/atom .*are the energies in eV"):
        prepare_data(fast_config(f"data.path={tmp_path}"))


def test_an_outlier_within_plausible_energies_is_named_by_its_robust_z(fast_config, tmp_path):
    import re
    import warnings

    from aenet_exp.errors import AenetWarning

    path = sorted(SMALL.glob("*.xsf"))[3]
    for source in sorted(SMALL.glob("*.xsf")):
        (tmp_path / source.name).write_text(source.read_text())
    text = path.read_text()
    atoms = int(text.split("PRIMCOORD")[1].split()[0])
    energy = float(re.search(r"total energy = (\S+)", text).group(1)) + 30.0 * atoms  # 30 eV/atom above
    (tmp_path / path.name).write_text(re.sub(r"total energy = \S+", f"total energy = {energy!r}", text))
    with pytest.warns(AenetWarning, match=rf"1 structures have cohesive energies per atom far from the others .*{path.name}"):
        prepare_data(fast_config(f"data.path={tmp_path}"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", AenetWarning)
        prepare_data(fast_config())  # the real data: no warning
