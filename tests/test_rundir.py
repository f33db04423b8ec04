"""A run directory is owned by one live run (rundir.py): concurrent and repeated runs into it are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from aenet_exp.build.training import run_training
from aenet_exp.errors import ConfigError
from aenet_exp.rundir import CONFIG_FILE, LOCK_FILE, RUN_ID_FILE, RunDirectory, refusal

from helpers import FAST, runs_of, store_uri


def test_a_second_run_into_a_finished_run_is_refused_but_resume_continues_it(fast_config, tmp_path):
    run_training(fast_config("checkpoint.every=1"), tmp_path / "run")
    with pytest.raises(ConfigError, match="^hydra.run.dir: .* holds a run already; .*resume="):
        run_training(fast_config(), tmp_path / "run")
    resumed = run_training(fast_config(f"resume={tmp_path / 'run'}", "iterations=3"), tmp_path / "ignored")
    assert "final/test/energy_rmse" in resumed


def test_a_live_run_holds_its_directory(tmp_path):
    owner = RunDirectory.claim(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"^hydra.run.dir: .* is in use by a live run \(process \d+ on "):
        RunDirectory.claim(tmp_path / "run", resuming=True)
    assert "in use by a live run" in refusal(tmp_path / "run", resuming=True)
    owner.release()
    RunDirectory.claim(tmp_path / "run").release()  # free again, and it holds no run files
    assert (tmp_path / "run" / LOCK_FILE).is_file()


def test_a_lock_dies_with_its_process(tmp_path):
    """The operating system releases the lock of a process that was killed: the directory can be resumed."""
    code = f"from aenet_exp.rundir import RunDirectory; RunDirectory.claim({str(tmp_path)!r}); import os; os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert refusal(tmp_path, resuming=True) is None


@pytest.mark.slow
def test_two_trainings_into_one_directory_at_once_record_one_run_whole(tmp_path):
    uri = store_uri(tmp_path)
    command = [sys.executable, "-m", "aenet_exp", "train", *FAST, f"tracking.uri={uri}", "hydra.run.dir=run"]
    first = subprocess.Popen([*command, "seed=1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen([*command, "seed=2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = [(p.wait(timeout=300), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert refused.startswith("aenet_exp: error: hydra.run.dir: ") and refused.count("\n") == 1, refused
    _, runs = runs_of(uri)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    recorded = runs[0]
    assert (tmp_path / "run" / RUN_ID_FILE).read_text().strip() == recorded.info.run_id
    written = OmegaConf.load(tmp_path / "run" / CONFIG_FILE)
    assert str(written.seed) == recorded.data.params["seed"]  # the files are the recorded run's
