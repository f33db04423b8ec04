"""``select``: pool structures ranked by a committee's disagreement, the top written for DFT, recorded in MLflow."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.io import read, write
from mlflow.tracking import MlflowClient

from aenet_exp.calculator import Calculator
from aenet_exp.data import DataError, read_structures
from aenet_exp.data.hdf5 import build_database
from aenet_exp.errors import AenetWarning, ConfigError, UserError
from aenet_exp.model import Potential
from aenet_exp.selection.ranking import disagreement
from aenet_exp.tracking.mlflow_run import MlflowRun

from helpers import FAST, SMALL, command, compose_train, run_cli, runs_of, store_uri, train


def select(args: list[str]):
    return command("select", args)


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    """A 4-member committee trained on the 16 small TiO2 structures (its run directory)."""
    run_dir = tmp_path_factory.mktemp("committee")
    cfg = compose_train(*FAST, "tracking.enabled=false", "committee=deep", "committee.members=4", "iterations=20",
                        "committee.calibrate=false", "force.weight=0.1")
    train(cfg, run_dir)
    return run_dir


def atoms_of(structure) -> Atoms:
    return Atoms(structure.species, positions=structure.positions, cell=structure.cell, pbc=structure.pbc)


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    """Five structures like the training ones, then two far outside the training data: one of them compressed by
    20 % (its features beyond the training range: the members' energies part), and the same one rattled by 0.4 Å
    (atoms close together: their forces part; saturated networks agree on the forces of the compressed one)."""
    structures = read_structures(SMALL)[:5]
    images = [atoms_of(s) for s in structures]
    compressed, rattled = images[2].copy(), images[2].copy()
    compressed.set_cell(compressed.cell * 0.8, scale_atoms=True)
    rattled.positions += np.random.default_rng(1).normal(0.0, 0.4, rattled.positions.shape)
    path = tmp_path_factory.mktemp("pool") / "pool.xyz"
    write(path, [*images, compressed, rattled], format="extxyz")
    return path


@pytest.mark.parametrize("by, far", [("energy", 5), ("forces", 6)])
def test_a_structure_far_from_the_training_data_is_selected_first(committee, pool_file, tmp_path, by, far):
    out = tmp_path / "selected.xyz"
    written = select([f"run={committee}", f"pool={pool_file}", "n=3", f"out={out}", f"by={by}", "tracking.enabled=false"])
    assert written == [out]
    frames = read(out, index=":")
    assert len(frames) == 3
    assert frames[0].info["pool_index"] == far and frames[0].info["selection_rank"] == 1
    key = "committee_energy_std_per_atom" if by == "energy" else "committee_max_force_std"
    values = [f.info[key] for f in frames]
    assert values == sorted(values, reverse=True) and values[-1] > 0
    assert all(f.info["selected_by"] == by for f in frames)


def test_the_ranking_is_the_calculators_spread(committee, pool_file):
    potential = Potential.load(committee / "potential.pt")
    pool = read_structures(pool_file)
    spread = disagreement(Calculator(potential), pool, batch_size=4)
    for index in (0, 5, 6):
        atoms = atoms_of(pool[index])
        atoms.calc = Calculator(potential)
        atoms.get_potential_energy()
        results = atoms.calc.results
        assert spread.energy_std_per_atom[index] == pytest.approx(results["energy_std"] / len(atoms), rel=1e-10)
        assert spread.max_force_std[index] == pytest.approx(np.linalg.norm(results["forces_std"], axis=1).max(), rel=1e-10)


def test_an_hdf5_pool_ranks_as_its_files(committee, pool_file, tmp_path):
    database = tmp_path / "pool.h5"
    build_database(str(pool_file), database)
    from_files = select([f"run={committee}", f"pool={pool_file}", "n=7", f"out={tmp_path / 'a.xyz'}", "tracking.enabled=false"])
    from_database = select([f"run={committee}", f"pool={database}", "n=7", f"out={tmp_path / 'b.xyz'}", "tracking.enabled=false",
                            "batch_size=2"])
    first, second = read(from_files[0], index=":"), read(from_database[0], index=":")
    assert [f.info["pool_index"] for f in first] == [f.info["pool_index"] for f in second]
    np.testing.assert_allclose([f.info["committee_energy_std_per_atom"] for f in first],
                               [f.info["committee_energy_std_per_atom"] for f in second], rtol=1e-10)


def test_the_selection_is_recorded_in_mlflow(committee, pool_file, tmp_path, capsys):
    uri = store_uri(tmp_path)
    select([f"run={committee}", f"pool={pool_file}", "n=2", f"out={tmp_path / 'selected.xyz'}", f"tracking.uri={uri}"])
    printed = capsys.readouterr().out
    assert "σE (meV/atom)" in printed and "selected 2 of 7 structures" in printed
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("aenet_exp").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["n"] == "2" and run.data.params["pool_structures"] == "7"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"selected.xyz", "sigma_histogram.png"}
    assert run.data.metrics["selection/threshold"] > 0


def test_bad_arguments_and_pools_name_what_is_wrong(committee, pool_file, tmp_path, fast_config):
    single = tmp_path / "single"
    train(fast_config(), single)
    cases = [
        ([f"pool={pool_file}"], ConfigError, "^run: expected"),
        ([f"run={committee}", f"pool={pool_file}", "by=stress"], ConfigError, "^by: expected one of"),
        ([f"run={committee}", f"pool={pool_file}", "n=0"], ConfigError, "^n: expected a positive integer, got 0"),
        ([f"run={single}", f"pool={pool_file}"], ConfigError, "is a single potential"),
        ([f"run={committee}", f"pool={tmp_path / 'missing.h5'}"], ConfigError, "^pool: no database"),
    ]
    broken = tmp_path / "broken.xyz"
    broken.write_text("2\nProperties=species:S:1:pos:R:3\nTi 0 0 0\nO 0 zero 1\n")
    cases.append(([f"run={committee}", f"pool={broken}"], DataError, "broken.xyz"))
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            select([*args, "tracking.enabled=false", f"out={tmp_path / 'never.xyz'}"])
    assert not (tmp_path / "never.xyz").exists()


@pytest.mark.slow
def test_a_committee_trained_and_selected_on_the_command_line(pool_file, tmp_path):
    uri = store_uri(tmp_path)
    trained = run_cli("train", *FAST, "committee=deep", "committee.members=3", "force.weight=0.1", f"tracking.uri={uri}",
                      f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("aenet_exp").experiment_id])
    assert run.info.status == "FINISHED"
    assert {"final/calibration/energy_factor", "final/test/energy_nll", "final/test/energy_miscalibration_area",
            "final/test/force_spearman"} <= run.data.metrics.keys()
    assert {"calibration.png", "error_vs_sigma.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    result = run_cli("select", f"run=runs:/{run.info.run_id}", f"pool={pool_file}", "n=2", f"tracking.uri={uri}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "selected.xyz"
    frames = read(tmp_path / "selected.xyz", index=":")
    assert len(frames) == 2 and all(f.info["committee_energy_std_per_atom"] > 0 for f in frames)
    bad = run_cli("select", f"run={tmp_path / 'run'}", "pool=nothing-here/*.xyz", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("aenet_exp: error: ") and "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def junk_pool(pool_file, tmp_path_factory):
    """The pool followed by two structures the committee cannot evaluate: one with a copper atom (a species it never
    saw), one with two atoms 0.05 Å apart (overlapping)."""
    images = read(pool_file, index=":")
    alien, overlapping = images[0].copy(), images[1].copy()
    alien[0].symbol = "Cu"
    overlapping.positions[1] = overlapping.positions[0] + [0.05, 0.0, 0.0]
    path = tmp_path_factory.mktemp("junk") / "junk.xyz"
    write(path, [*images, alien, overlapping], format="extxyz")
    return path


def test_structures_the_committee_cannot_evaluate_are_skipped_counted_and_listed(committee, pool_file, junk_pool, tmp_path):
    uri = store_uri(tmp_path)
    clean = select([f"run={committee}", f"pool={pool_file}", "n=7", f"out={tmp_path / 'clean.xyz'}", "tracking.enabled=false"])
    out = tmp_path / "selected.xyz"
    with pytest.warns(AenetWarning, match=rf"^skipped 2 of 9 pool structures the committee cannot evaluate .*, listed "
                                          rf"in {tmp_path / 'selected.skipped.tsv'}$"):
        written = select([f"run={committee}", f"pool={junk_pool}", "n=9", f"out={out}", f"tracking.uri={uri}"])
    assert written == [out, tmp_path / "selected.skipped.tsv"]
    assert [f.info["pool_index"] for f in read(out, index=":")] == [f.info["pool_index"] for f in read(clean[0], index=":")]
    header, alien, overlapping = written[1].read_text().splitlines()
    assert header == "pool_index\tstructure\twhy"
    assert alien == f"7\t{junk_pool} frame 7\tspecies ['Cu'] are not the committee's ['O', 'Ti']"
    assert overlapping.startswith(f"8\t{junk_pool} frame 8\tatoms 0 (") and overlapping.endswith("overlapping atoms")
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("aenet_exp").experiment_id])
    assert run.data.params["pool_skipped"] == "2" and run.data.params["pool_structures"] == "9"
    assert "selected.skipped.tsv" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert select([f"run={committee}", f"pool={pool_file}", f"out={out}", "tracking.enabled=false"]) == [out]
    assert not written[1].exists()  # the list of an earlier selection into out= is gone


def test_a_database_row_naming_no_species_is_skipped(committee, pool_file, tmp_path):
    database = tmp_path / "pool.h5"
    build_database(str(pool_file), database)
    with h5py.File(database, "r+") as h5:
        first, atoms = int(h5["atom_offset"][3]), int(h5["n_atoms"][3])
        h5["species_index"][first + atoms - 1] = 5  # the database has 2 species
    with pytest.warns(AenetWarning, match="^skipped 1 of 7 pool structures"):
        written = select([f"run={committee}", f"pool={database}", "n=7", f"out={tmp_path / 'a.xyz'}", "tracking.enabled=false"])
    assert 3 not in [f.info["pool_index"] for f in read(written[0], index=":")]
    assert written[1].read_text().splitlines()[1] == (
        f"3\t{database}\tstructure 3 ({pool_file} frame 3): species index 5 is outside the database's 2 species")


@pytest.mark.parametrize("out, key, message", [
    ("/proc/aenet_exp/selected.xyz", "out", "cannot write in /proc"),
    ("{tmp}", "out", "is a directory; give a file name"),
    ("{tmp}/a_file/selected.xyz", "out", "a_file is a file, not a directory"),
    ("{tmp}/selected.xyz tracking.uri=bogus://x", "tracking.uri", "cannot record to bogus://x"),
])
def test_out_and_the_store_are_checked_before_the_pool_is_read(committee, tmp_path, out, key, message):
    """The pool is broken: were it read first, its error would come first (as it did, after evaluating a whole pool)."""
    (tmp_path / "a_file").write_text("")
    broken = tmp_path / "broken.xyz"
    broken.write_text("2\nProperties=species:S:1:pos:R:3\nTi 0 0 0\nO 0 zero 1\n")
    before = sorted(tmp_path.rglob("*"))
    out, *more = out.format(tmp=tmp_path).split()
    with pytest.raises(UserError, match=f"^{key}: .*{message}"):
        select([f"run={committee}", f"pool={broken}", f"out={out}", *more])
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a store


def test_a_symbolic_link_as_out_is_followed(committee, pool_file, tmp_path):
    (tmp_path / "data").mkdir()
    link = tmp_path / "selected.xyz"
    link.symlink_to(tmp_path / "data" / "selected.xyz")
    assert select([f"run={committee}", f"pool={pool_file}", "n=2", f"out={link}", "tracking.enabled=false"]) == \
        [tmp_path / "data" / "selected.xyz"]
    assert link.is_symlink() and len(read(link, index=":")) == 2


def test_the_record_holds_its_own_selection_when_another_select_writes_out_meanwhile(committee, pool_file, tmp_path,
                                                                                     monkeypatch):
    """A second ``select`` into the same ``out`` puts its file there while the first one records."""
    out, uri = tmp_path / "selected.xyz", store_uri(tmp_path)
    original = MlflowRun.log_artifact

    def meanwhile(run, path, artifact_path=None):
        out.write_text("another selection\n")
        original(run, path, artifact_path)

    monkeypatch.setattr(MlflowRun, "log_artifact", meanwhile)
    select([f"run={committee}", f"pool={pool_file}", "n=2", f"out={out}", f"tracking.uri={uri}"])
    client, (run,) = runs_of(uri)
    recorded = Path(client.download_artifacts(run.info.run_id, "selected.xyz", str(tmp_path / "download")))
    frames = read(recorded, index=":")
    assert len(frames) == 2 and frames[0].info["selection_rank"] == 1


def test_a_store_failing_while_recording_is_one_line_the_run_failed_and_out_unwritten(committee, pool_file, tmp_path,
                                                                                      monkeypatch):
    """The artifact store's disk is full when the selection is copied there."""
    out, uri = tmp_path / "selected.xyz", store_uri(tmp_path)

    def full(run, path, artifact_path=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(MlflowRun, "log_artifact", full)
    with pytest.raises(UserError, match=r"^tracking.uri: the MLflow store at .* failed while recording the selection "
                                        r"\(\[Errno 28\] No space left on device: .*\); out= is not written$"):
        select([f"run={committee}", f"pool={pool_file}", "n=2", f"out={out}", f"tracking.uri={uri}"])
    _, (run,) = runs_of(uri)
    assert run.info.status == "FAILED" and not out.exists()
