"""Where a trained potential is (model/locate.py): run directories, model files, runs:/ URIs in the configured store."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from aenet_exp.build.training import run_training
from aenet_exp.calculator import Calculator
from aenet_exp.errors import UserError
from aenet_exp.model import Potential
from aenet_exp.model.locate import ModelNotFound, load_potential, model_path
from aenet_exp.model.potential import MODEL_FILE
from aenet_exp.tracking.observer import MlflowObserver, recorded_run_id

from helpers import FAST, SMALL, command, compose_train, store_uri


def test_init_from_a_runs_uri_reads_the_store_of_tracking_uri(tmp_path, monkeypatch):
    """``init_from=runs:/<id>`` with a non-default ``tracking.uri`` finds the run there (not in ./outputs)."""
    monkeypatch.chdir(tmp_path)  # no default store here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = store_uri(tmp_path / "elsewhere")
    cfg = compose_train(*FAST, f"tracking.uri={uri}", "tracking.log_model=false", "precision=float64")
    run_training(cfg, tmp_path / "first", [MlflowObserver(OmegaConf.to_container(cfg.tracking), run_dir=tmp_path / "first")])
    run_id = recorded_run_id(tmp_path / "first")
    tuned = compose_train(*FAST, f"tracking.uri={uri}", "tracking.enabled=false", f"init_from=runs:/{run_id}",
                          "iterations=1", "optimizer.mu=1e-30", "precision=float64")
    run_training(tuned, tmp_path / "second")
    trained = Potential.load(tmp_path / "first" / MODEL_FILE)
    start = Potential.load(tmp_path / "second" / MODEL_FILE)
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(start.state_dict()[name], value, rtol=1e-12, atol=1e-20)
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not an aenet_exp model"), (b"\x00garbage\xff" * 10, "not an aenet_exp model"), (None, "no model file")],
    ids=["empty", "random-bytes", "missing"],
)
def test_an_unreadable_model_is_one_user_error_naming_the_key(tmp_path, content, message):
    path = tmp_path / "potential.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=f"^init_from: .*{message}"):
        load_potential(path, key="init_from")


def test_a_dict_without_a_model_is_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "potential.pt")
    with pytest.raises(UserError, match="not an aenet_exp model"):
        load_potential(tmp_path)


def test_directories_lead_to_their_model_file(tmp_path):
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / MODEL_FILE).write_bytes(b"x")
    assert model_path(tmp_path) == tmp_path / "artifacts" / MODEL_FILE
    with pytest.raises(ModelNotFound, match="no model file"):
        model_path(tmp_path / "nothing")


@pytest.fixture(scope="module")
def logged_committee(tmp_path_factory):
    """A 2-member committee whose model MLflow logged in a SQLite store: (the store's URI, the run id)."""
    where = tmp_path_factory.mktemp("logged")
    uri = store_uri(where)
    cfg = compose_train(*FAST, f"tracking.uri={uri}", "committee=deep", "committee.members=2",
                        "committee.calibrate=false", "iterations=1")
    run_training(cfg, where / "run", [MlflowObserver(OmegaConf.to_container(cfg.tracking), run_dir=where / "run")])
    return uri, recorded_run_id(where / "run")


@pytest.mark.parametrize("how", ["calculator", "export", "select"])
def test_runs_model_loads_from_the_store_given_without_the_environment(logged_committee, tmp_path, monkeypatch, how):
    """``runs:/<id>/model`` (the logged MLflow model) is found in the store passed explicitly, with no
    ``MLFLOW_TRACKING_URI`` in the environment and no default store in the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, run_id = logged_committee
    location = f"runs:/{run_id}/model"
    if how == "calculator":
        assert Calculator.load(location, tracking_uri=uri).potential.members == 2
    elif how == "export":
        written = command("export", [f"run={location}", f"tracking.uri={uri}", f"out={tmp_path / 'aenet'}"])
        assert written and all(Path(path).exists() for path in written)
    else:
        written = command("select", [f"run={location}", f"pool={SMALL}", "n=1", f"out={tmp_path / 'top.xyz'}",
                                     f"tracking.uri={uri}", "tracking.enabled=false"])
        assert written == [tmp_path / "top.xyz"]
    assert not (tmp_path / "outputs").exists()
