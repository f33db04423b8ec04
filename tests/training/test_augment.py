"""augment.* (training/augment.py): Taylor children of the training split only, in memory or from a database."""

from __future__ import annotations

import re

import numpy as np
import pytest

from aenet_exp.build.training import prepared_data, taylor_expansion
from aenet_exp.data import StructureDatabase, build_database
from aenet_exp.errors import ConfigError

from helpers import FAST, SMALL, run_cli, runs_of, store_uri, train

TAYLOR = ("augment=taylor", "augment.children=3")


def origin(structure) -> tuple[str, int]:
    """What a child shares with its parent: the file and frame it was read from."""
    return structure.source, structure.frame


def test_children_come_from_training_structures_only_and_train_only(fast_config):
    data = prepared_data(fast_config(*TAYLOR))
    n_read = 16
    children = np.arange(n_read, len(data.structures))
    parents = data.train[data.train < n_read]
    assert len(parents) == 12 and len(data.test) == 4
    assert data.children == len(children) == 3 * int(data.columns.has_forces[parents].sum()) == 36
    np.testing.assert_array_equal(data.train[len(parents):], children)  # children are the last training indices
    assert not set(children) & set(data.test)  # no child in the test set
    training_origins = {origin(data.structures[int(i)]) for i in parents}
    test_origins = {origin(data.structures[int(i)]) for i in data.test}
    child_origins = {origin(data.structures[int(i)]) for i in children}
    assert child_origins == training_origins and not child_origins & test_origins  # no child of a test parent
    assert not data.columns.has_forces[children].any()  # never candidates of force supervision
    assert all(data.structures[int(i)].forces is None for i in children)
    assert data.facts()["dataset.train_children"] == 36 and data.facts()["dataset.train_structures"] == 48


def test_split_first_augment_after(fast_config):
    """The split of the structures read is the one without augmentation."""
    plain = prepared_data(fast_config())
    data = prepared_data(fast_config(*TAYLOR))
    np.testing.assert_array_equal(data.test, plain.test)
    np.testing.assert_array_equal(data.train[: len(plain.train)], plain.train)


def test_augment_seed_defaults_to_the_run_seed_plus_three_and_changes_the_children(fast_config):
    assert taylor_expansion(fast_config(*TAYLOR, "seed=5")).seed == 8
    assert taylor_expansion(fast_config(*TAYLOR, "seed=5", "augment.seed=42")).seed == 42
    assert taylor_expansion(fast_config()) is None

    def child_positions(*overrides):
        data = prepared_data(fast_config(*TAYLOR, *overrides))
        return np.concatenate([data.structures[int(i)].positions for i in data.train[-data.children:]])

    np.testing.assert_array_equal(child_positions("augment.seed=1"), child_positions("augment.seed=1"))
    assert not np.allclose(child_positions("augment.seed=1"), child_positions("augment.seed=2"))


def without_forces(target, names):
    """Copies of the small TiO2 files into ``target``, those named ``names`` without their force columns."""
    target.mkdir()
    for path in sorted(SMALL.glob("*.xsf")):
        text = path.read_text()
        if path.name in names:
            text = re.sub(r"^(\s*[A-Z][a-z]?(?:\s+\S+){3})(?:\s+\S+){3}\s*$", r"\1", text, flags=re.MULTILINE)
        (target / path.name).write_text(text)
    return target


def test_parents_without_forces_warn_none_at_all_names_augment(fast_config, tmp_path):
    names = sorted(p.name for p in SMALL.glob("*.xsf"))
    some = without_forces(tmp_path / "some", names[:5])
    with pytest.warns(UserWarning, match=r"^augment: \d+ of 12 training structures have no forces"):
        data = prepared_data(fast_config(*TAYLOR, f"data.path={some}"))
    assert data.children == 3 * int(data.columns.has_forces[data.train].sum())
    none = without_forces(tmp_path / "none", names)
    with pytest.raises(ConfigError, match=r"^augment: is taylor, but none of the 12 training structures has forces"):
        prepared_data(fast_config(*TAYLOR, f"data.path={none}"))


def same_structures(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
        assert (x.energy, x.species, x.forces is None) == (y.energy, y.species, y.forces is None)


@pytest.mark.parametrize("filters", [[], ["data.max_forces=2.0"]])
def test_a_database_built_with_children_trains_on_the_same_structures_as_memory(fast_config, tmp_path, filters):
    """The database holds the children of every structure with forces; the run splits the structures read and
    keeps the children of its training structures only, the very children memory makes."""
    cfg = fast_config(*TAYLOR, *filters)
    database = tmp_path / "children.h5"
    build_database(SMALL, database, augmentation=taylor_expansion(cfg))
    assert len(StructureDatabase(database)) == 16 * 4  # every structure read has children, the test ones too
    memory = prepared_data(cfg)
    stored = prepared_data(fast_config(*TAYLOR, *filters, f"data.database={database}"))
    if filters:
        assert memory.removed["max_forces"] > 0
    for name in ("train", "test"):
        np.testing.assert_array_equal(getattr(stored, name), getattr(memory, name))
    assert stored.children == memory.children
    same_structures(stored.structures, memory.structures)
    np.testing.assert_array_equal(stored.columns.energy, memory.columns.energy)
    np.testing.assert_array_equal(stored.columns.has_forces, memory.columns.has_forces)


def test_a_database_without_children_gets_them_in_memory(fast_config, tmp_path):
    database = tmp_path / "plain.h5"
    build_database(SMALL, database)
    same_structures(prepared_data(fast_config(*TAYLOR, f"data.database={database}")).structures,
                    prepared_data(fast_config(*TAYLOR)).structures)


def test_a_database_with_other_children_names_the_key_and_augment_none_leaves_them_out(fast_config, tmp_path):
    database = tmp_path / "children.h5"
    build_database(SMALL, database, augmentation=taylor_expansion(fast_config(*TAYLOR)))
    with pytest.raises(ConfigError, match=r"^augment.children: is 2, but the Taylor children of .* were made with 3"):
        prepared_data(fast_config("augment=taylor", "augment.children=2", f"data.database={database}"))
    with pytest.raises(ConfigError, match=r"^augment.seed: is 9, but"):
        prepared_data(fast_config(*TAYLOR, "augment.seed=9", f"data.database={database}"))
    with pytest.warns(UserWarning, match=r"^data.database: .* holds Taylor children; augment=none trains without"):
        plain = prepared_data(fast_config(f"data.database={database}"))
    assert plain.children == 0 and len(plain.structures) == 16


@pytest.mark.slow
def test_training_from_the_database_equals_training_in_memory(fast_config, tmp_path):
    base = [*TAYLOR, "precision=float64", "iterations=3"]
    database = tmp_path / "children.h5"
    memory, memory_run = train(fast_config(*base), tmp_path / "memory")
    stored, stored_run = train(fast_config(*base, f"data.database={database}"), tmp_path / "stored")
    assert StructureDatabase(database).augmentation == taylor_expansion(fast_config(*base))  # built with children
    assert memory_run.facts["dataset.train_children"] == stored_run.facts["dataset.train_children"] == 36
    for ours, theirs in [*zip(memory_run.epochs, stored_run.epochs), (memory, stored)]:
        assert ours.keys() == theirs.keys()
        for key in (k for k in ours if not k.startswith("time/")):
            assert theirs[key] == pytest.approx(ours[key], rel=1e-10, abs=1e-12), key


@pytest.mark.slow
def test_training_with_taylor_children_logs_their_count(tmp_path):
    uri = store_uri(tmp_path)
    result = run_cli("train", *FAST, *TAYLOR, f"tracking.uri={uri}", "iterations=3", "force=subsampled",
                     "caching=auto", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, runs = runs_of(uri)
    params = runs[0].data.params
    assert runs[0].info.status == "FINISHED"
    assert (params["augment.name"], params["dataset.train_children"], params["dataset.train_structures"]) == \
        ("taylor", "36", "48")
    assert "final/test/force_rmse" in runs[0].data.metrics


@pytest.mark.slow
def test_build_db_with_taylor_children_and_bad_augment_values_exit_2(tmp_path):
    database = tmp_path / "children.h5"
    built = run_cli("build-db", f"data.path={SMALL}", f"data.database={database}", *TAYLOR, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert f"wrote 64 structures to {database}" in built.stdout
    assert StructureDatabase(database).augmentation.seed == 3  # the run's seed 0 + 3, as training derives it
    for bad in ("augment.children=0", "augment.displacement=-0.1"):
        refused = run_cli("train", *FAST, "augment=taylor", bad, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith(
            f"aenet_exp: error: {bad.split('=')[0]}: "), refused.stderr
        assert "Traceback" not in refused.stderr
