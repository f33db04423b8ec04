"""Every command's Hydra app (build/apps.py) stops on SIGTERM the way ``train`` does: its MLflow run marked KILLED,
one line saying only what exists, exit 143. SIGTERM is delivered by the process to itself at a chosen call, in a
real ``python -m aenet_exp`` subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import FAST, SMALL, compose_train, runs_of, store_uri, train

# Runs the command line of argv[2:] with SIGTERM sent to itself when argv[1] (module:attribute) is first called.
TERMINATE_AT = """
import importlib, os, signal, sys
module, _, name = sys.argv[1].partition(":")
owner = importlib.import_module(module)
*path, attribute = name.split(".")
for part in path:
    owner = getattr(owner, part)
original = getattr(owner, attribute)

def terminated(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return original(*args, **kwargs)

setattr(owner, attribute, terminated)
from aenet_exp.cli import main
main(sys.argv[2:])
"""


def terminated_at(call: str, *args: str, cwd) -> subprocess.CompletedProcess:
    """``python -m aenet_exp <args>``, sent SIGTERM by itself when ``call`` is first made."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-c", TERMINATE_AT, call, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs on one split (seed 3), weights from seeds 7 and 8: a committee's members, and ``ensemble``'s runs."""
    root = tmp_path_factory.mktemp("runs")
    for k in (7, 8):
        train(compose_train(*FAST, "tracking.enabled=false", "seed=3", "committee=deep", "committee.members=1",
                            "committee.calibrate=false", f"committee.seeds=[{k}]"), root / f"r{k}")
    committee = root / "committee"
    train(compose_train(*FAST, "tracking.enabled=false", "committee=deep", "committee.members=2",
                        "committee.calibrate=false"), committee)
    return root


def interruption_line(result: subprocess.CompletedProcess) -> str:
    """The one line an interrupted command printed (no traceback), after checking its exit status."""
    assert result.returncode == 143, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("aenet_exp: interrupted (terminated by signal SIGTERM): "), result.stderr
    return last


COMMANDS = {  # the command line of each command, given the runs' folder and an output
    "select": lambda root, out: ["select", f"run={root / 'committee'}", f"pool={SMALL}", "n=2",
                                 f"out={out}.xyz"],
    "ensemble": lambda root, out: ["ensemble", f"runs=[{root / 'r7'},{root / 'r8'}]", f"out={out}"],
}


@pytest.mark.slow
@pytest.mark.parametrize("command, call", [
    ("select", "aenet_exp.selection.command:rank_pool"),
    ("ensemble", "aenet_exp.ensemble.command:calibrate"),
])
def test_sigterm_during_the_work_is_one_line_exit_143_and_leaves_nothing(runs, tmp_path, command, call):
    uri = store_uri(tmp_path)
    result = terminated_at(call, *COMMANDS[command](runs, tmp_path / "out"), f"tracking.uri={uri}", cwd=tmp_path)
    assert interruption_line(result).endswith("nothing was written")
    _, recorded = runs_of(uri)
    assert recorded == []  # the store was opened before the work; no run was started, none is left RUNNING
    assert not (tmp_path / "out.xyz").exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["select", "ensemble"])
def test_sigterm_while_recording_marks_the_run_killed_and_says_so(runs, tmp_path, command):
    uri = store_uri(tmp_path)
    result = terminated_at("aenet_exp.tracking.mlflow_run:MlflowRun.log_artifact",
                           *COMMANDS[command](runs, tmp_path / "out"), f"tracking.uri={uri}", cwd=tmp_path)
    line = interruption_line(result)
    _, (run,) = runs_of(uri)
    assert run.info.status == "KILLED"
    assert f"the MLflow run {run.info.run_id} is marked KILLED" in line
    if command == "ensemble":
        assert line.endswith(f"the committee is saved in {tmp_path / 'out'}")
    else:
        assert not (tmp_path / "out.xyz").exists()


@pytest.mark.slow
@pytest.mark.parametrize("tracking", [True, False])
def test_sigterm_before_the_first_epoch_claims_no_checkpoint(tmp_path, tracking):
    uri = store_uri(tmp_path)
    result = terminated_at("aenet_exp.training.run:fit", "train", *FAST, f"tracking.enabled={tracking}",
                           f"tracking.uri={uri}", "hydra.run.dir=run", cwd=tmp_path)
    line = interruption_line(result)
    assert line.endswith("no epoch had finished: nothing to resume") and "checkpointed" not in line
    _, recorded = runs_of(uri)
    if tracking:
        (run,) = recorded
        assert run.info.status == "KILLED" and f"the MLflow run {run.info.run_id} is marked KILLED" in line
    else:
        assert recorded == [] and "MLflow" not in line


@pytest.mark.slow
@pytest.mark.parametrize("command, call, last_words", [
    ("train", "aenet_exp.build.apps:prepare", "no epoch had finished: nothing to resume"),
    ("learn", "aenet_exp.build.apps:campaign_config", "nothing was written"),
    ("build-db", "aenet_exp.build.apps:check_boolean_overrides", "nothing was written"),
    ("select", "aenet_exp.build.apps:check_boolean_overrides", "nothing was written"),
    ("export", "aenet_exp.build.apps:check_boolean_overrides", "nothing was written"),
])
def test_sigterm_while_a_command_prepares_is_one_line_exit_143_and_leaves_no_folder(tmp_path, command, call,
                                                                                     last_words):
    """Before its work begins (composed, checking its options) a command stopped by SIGTERM says so in one line and
    leaves no run or campaign folder (it was killed without a word, its folder left, before)."""
    store = f"tracking.uri={store_uri(tmp_path, made=False)}"
    arguments = {
        "train": [*FAST, "hydra.run.dir=folder", store],
        "learn": ["hydra.run.dir=folder", store],
        "build-db": [f"data.path={SMALL}", "data.database=folder/db.h5"],
        "select": ["run=nowhere", f"pool={SMALL}", "out=folder/selected.xyz", store],
        "export": ["run=nowhere", "out=folder"],
    }[command]
    result = terminated_at(call, command, *arguments, cwd=tmp_path)
    assert interruption_line(result).endswith(last_words)
    assert not (tmp_path / "folder").exists() and not (tmp_path / "mlflow.db").exists()
