"""The trained potential as an MLflow pyfunc model, registered and loaded back."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from aenet_exp.build.training import run_training
from aenet_exp.calculator import Calculator
from aenet_exp.config.validation import ConfigError, validate
from aenet_exp.data import read_structures
from aenet_exp.tracking.mlflow_run import REGISTERED_MODEL_TAG
from aenet_exp.tracking.observer import MlflowObserver, recorded_run_id

from helpers import FAST, SMALL, compose_train, store_uri

MODEL_NAME = "tio2_test"


@dataclass
class Trained:
    uri: str
    run_dirs: list[Path]
    run_ids: list[str]
    stdout: list[str]


def train_in_process(uri: str, run_dir: Path, *overrides: str) -> str:
    """A quick training recorded in ``uri`` by the MLflow observer, as the CLI does it; its stdout."""
    cfg = compose_train(*FAST, f"tracking.uri={uri}", *overrides)
    observer = MlflowObserver(OmegaConf.to_container(cfg.tracking), run_dir=run_dir)
    output = io.StringIO()
    with redirect_stdout(output):
        run_training(cfg, run_dir, [observer])
    return output.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Two quick trainings, seeds 0 and 1, each logging its model and registering it as ``tio2_test``
    (in this process, as the CLI does it; tests/cli/test_cli.py registers through the CLI)."""
    root = tmp_path_factory.mktemp("pyfunc")
    uri = store_uri(root / "store")  # not MLflow's default store of the working directory
    run_dirs = [root / "first", root / "second"]
    stdout = [train_in_process(uri, run_dir, f"seed={seed}", f"tracking.register={MODEL_NAME}")
              for seed, run_dir in enumerate(run_dirs)]
    return Trained(uri, run_dirs, [recorded_run_id(d) for d in run_dirs], stdout)


@pytest.fixture
def store(trained: Trained):
    """The trainings' store as this process's tracking URI (also ``MLFLOW_TRACKING_URI``), unset afterwards."""
    mlflow.set_tracking_uri(trained.uri)
    yield trained
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def structures():
    return read_structures(SMALL)[:5]


def atoms_of(structure) -> Atoms:
    return Atoms(structure.species, positions=structure.positions, cell=structure.cell, pbc=structure.pbc)


def molecule(structure) -> Atoms:
    """The first six atoms of ``structure`` as an isolated cluster (no cell)."""
    return Atoms(structure.species[:6], positions=structure.positions[:6])


def reference(run_dir: Path, items) -> np.ndarray:
    return Calculator.load(run_dir).predict(items).energy_pred


def test_pyfunc_predicts_the_calculators_energies(store: Trained, structures) -> None:
    model = mlflow.pyfunc.load_model(f"runs:/{store.run_ids[0]}/model")
    atoms = [atoms_of(s) for s in structures] + [molecule(structures[0])]
    energies = model.predict(atoms)
    assert isinstance(energies, np.ndarray) and energies.dtype == np.float64 and energies.shape == (6,)
    np.testing.assert_allclose(energies, reference(store.run_dirs[0], atoms), rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.predict(structures), energies[:5], rtol=0, atol=1e-10)
    assert model.predict([]).shape == (0,)


def test_pyfunc_takes_a_dataframe_one_structure_per_row(store: Trained, structures) -> None:
    model = mlflow.pyfunc.load_model(f"runs:/{store.run_ids[0]}/model")
    cluster = molecule(structures[1])
    frame = pd.DataFrame(
        {
            "symbols": [list(s.species) for s in structures[:2]] + [cluster.get_chemical_symbols()],
            "positions": [s.positions.tolist() for s in structures[:2]] + [cluster.positions],
            "cell": [s.cell for s in structures[:2]] + [None],
        }
    )
    expected = reference(store.run_dirs[0], [atoms_of(s) for s in structures[:2]] + [cluster])
    np.testing.assert_allclose(model.predict(frame), expected, rtol=0, atol=1e-10)
    explicit = frame.iloc[:2].assign(pbc=[True, [True, True, True]])
    np.testing.assert_allclose(model.predict(explicit), expected[:2], rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda s: pd.DataFrame({"symbols": [list(s.species)], "cell": [s.cell]}), "no column 'positions'"),
        (lambda s: pd.DataFrame({"positions": [s.positions]}), "no column 'symbols'"),
        (lambda s: pd.DataFrame({"symbols": ["TiO2"], "positions": [s.positions]}), "row 0: symbols: expected a list"),
        (
            lambda s: pd.DataFrame({"symbols": [list(s.species)], "positions": [s.positions[:, :2]]}),
            r"model input row 0: expected positions of shape \(24, 3\)",
        ),
        (lambda s: [atoms_of(s), "TiO2"], "the list holds a str"),
        (lambda s: {"symbols": s.species}, "got dict"),
    ],
)
def test_bad_input_is_a_clear_value_error(store: Trained, structures, make_input, message) -> None:
    model = mlflow.pyfunc.load_model(f"runs:/{store.run_ids[0]}/model")
    with pytest.raises(ValueError, match=message):
        model.predict(make_input(structures[0]))


def test_each_run_registers_a_new_version(store: Trained, structures) -> None:
    client = MlflowClient(store.uri)
    assert client.get_registered_model(MODEL_NAME).name == MODEL_NAME
    versions = {int(v.version): v.run_id for v in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    assert versions == {1: store.run_ids[0], 2: store.run_ids[1]}
    for version, (run_id, stdout) in enumerate(zip(store.run_ids, store.stdout), start=1):
        assert client.get_run(run_id).data.tags[REGISTERED_MODEL_TAG] == f"models:/{MODEL_NAME}/{version}"
        assert f"MLflow model runs:/{run_id}/model, registered as models:/{MODEL_NAME}/{version}" in stdout
    second = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/2").predict(structures)
    np.testing.assert_allclose(second, reference(store.run_dirs[1], structures), rtol=0, atol=1e-10)
    assert np.abs(second - reference(store.run_dirs[0], structures)).max() > 1e-6  # seed 1, not seed 0


def test_calculator_loads_the_logged_model(store: Trained, structures) -> None:
    logged = Calculator.load(f"runs:/{store.run_ids[0]}/model").predict(structures)
    energies, forces = logged.energy_pred, logged.force_pred
    written = Calculator.load(store.run_dirs[0]).predict(structures)
    expected, expected_forces = written.energy_pred, written.force_pred
    np.testing.assert_array_equal(energies, expected)
    np.testing.assert_array_equal(np.concatenate(forces), np.concatenate(expected_forces))


def test_model_is_code_and_weights_without_pickles(store: Trained) -> None:
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{store.run_ids[0]}/model"))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert {"MLmodel", "pyfunc_code.py", "artifacts/potential.pt", "requirements.txt"} <= files
    assert not [name for name in files if name.endswith((".pkl", ".pickle"))]
    requirements = (local / "requirements.txt").read_text().split()
    assert any(r.startswith("aenet_exp==") for r in requirements) and any(r.startswith("torch==") for r in requirements)


def test_log_model_false_logs_no_model(trained: Trained, tmp_path: Path) -> None:
    stdout = train_in_process(trained.uri, tmp_path, "tracking.log_model=false", "iterations=1")
    assert "MLflow model" not in stdout
    client = MlflowClient(trained.uri)
    run = client.get_run(recorded_run_id(tmp_path))
    assert run.info.status == "FINISHED"
    assert "potential.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    logged = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert logged == []
    assert len(client.search_logged_models([run.info.experiment_id])) == 2  # the fixture's runs'


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["tracking.register=tio2/test"], "tracking.register: expected a registered-model name without '/' or ':'"),
        (["tracking.register=' '"], "tracking.register: expected a registered-model name"),
        (["tracking.register=tio2", "tracking.log_model=false"], "tracking.register: registers the logged model"),
        (["tracking.register=tio2", "tracking.enabled=false"], "tracking.register: registers the logged model"),
    ],
)
def test_register_needs_a_valid_name_and_a_logged_model(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(compose_train(*FAST, *overrides))



def test_a_committee_run_records_its_calibration_and_its_model_returns_sigma(tmp_path, structures) -> None:
    uri = store_uri(tmp_path)
    train_in_process(uri, tmp_path / "run", "committee=deep", "committee.members=3", "committee.calibration_percent=30",
                     "force.weight=0.3")
    client = MlflowClient(uri)
    run = client.get_run(recorded_run_id(tmp_path / "run"))
    assert run.info.status == "FINISHED"
    assert run.data.params["committee.members"] == "3"
    assert {"final/calibration/energy_factor", "final/calibration/force_factor", "final/test/energy_nll",
            "final/test/force_spearman", "final/test/energy_miscalibration_area_uncalibrated", "test/energy_std"} \
        <= run.data.metrics.keys()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"calibration.png", "error_vs_sigma.png"} <= artifacts
    mlflow.set_tracking_uri(uri)
    try:
        predicted = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(structures)
    finally:
        mlflow.set_tracking_uri(None)
    expected = Calculator.load(tmp_path / "run").predict(structures)
    assert list(predicted.columns) == ["energy", "energy_std"]
    np.testing.assert_allclose(predicted["energy"], expected.energy_pred, rtol=0, atol=1e-10)
    np.testing.assert_allclose(predicted["energy_std"], expected.energy_std, rtol=1e-10)
    assert (expected.energy_std > 0).all()
