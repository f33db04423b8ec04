"""Faults: a training or a database build killed with SIGKILL leaves no corrupt file at a final path,
and a killed training resumes to the result of an uninterrupted one."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from aenet_exp.build.training import run_training
from aenet_exp.data.hdf5 import StructureDatabase
from aenet_exp.model import Potential
from aenet_exp.training.checkpoint import load_checkpoint

from helpers import FAST, compose_train

pytestmark = pytest.mark.slow


TRAINING = [*FAST, "tracking.enabled=false", "precision=float64", "force=full", "iterations=6", "checkpoint.every=1"]


def start(args: list[str], cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aenet_exp", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_after(process: subprocess.Popen, condition, delay: float, timeout: float = 120) -> None:
    """SIGKILL ``process`` ``delay`` seconds after ``condition()`` first holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None or condition(), "finished before the condition held"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(delay)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Final metrics of a run in this process, by its overrides after FAST: trained once, shared by the seeds."""
    trained = {}

    def metrics(*overrides):
        if overrides not in trained:
            cfg = compose_train(*FAST, "tracking.enabled=false", *overrides)  # as fast_config composes it
            trained[overrides] = run_training(cfg, tmp_path_factory.mktemp("uninterrupted"))
        return trained[overrides]

    return metrics


@pytest.mark.parametrize("seed", [1, 2])
def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path, fast_config, uninterrupted, seed):
    run_dir = tmp_path / "run"
    process = start(["train", *TRAINING, f"hydra.run.dir={run_dir}"], tmp_path)
    checkpoint = run_dir / "checkpoint.pt"
    kill_after(process, checkpoint.exists, random.Random(seed).uniform(0.0, 1.5))

    for name in os.listdir(run_dir):  # whatever stands at a final path is whole
        if name == "checkpoint.pt":
            load_checkpoint(run_dir)
        elif name == "potential.pt":
            Potential.load(run_dir / name)
    resumed = run_training(fast_config(*TRAINING[len(FAST):], f"resume={run_dir}"), run_dir)
    whole = uninterrupted(*TRAINING[len(FAST):])
    for key in (k for k in whole if not k.startswith("time/")):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-10), key


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_database_build_leaves_nothing_corrupt(tmp_path, seed):
    from aenet_exp.config import sample_data_path

    database = tmp_path / "big.h5"
    sources = "[" + ",".join([sample_data_path("tio2-sample.tar.gz")] * 12) + "]"
    process = start(["build-db", f"data.path={sources}", f"data.database={database}", "show_progress=false"],
                    tmp_path)
    started = lambda: any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # noqa: E731
    kill_after(process, started, random.Random(seed).uniform(0.0, 0.5))
    assert process.returncode == -signal.SIGKILL, "the build ended before the kill"
    if database.exists():  # renamed into place just before the kill: whole
        assert len(StructureDatabase(database)) == 12 * 167
    leftovers = [p.name for p in tmp_path.iterdir() if p != database]
    temporary = re.compile(rf"\.big\.h5\.{process.pid}-[0-9a-f]+\.tmp")
    assert all(temporary.fullmatch(name) for name in leftovers), leftovers  # only the killed build's hidden file


@pytest.mark.parametrize("seed", [1, 2])
def test_killed_cache_write_leaves_only_whole_entries(tmp_path, fast_config, uninterrupted, seed):
    import numpy as np

    cache = tmp_path / "cache"
    args = [*TRAINING, "caching=force", f"caching.persist_dir={cache}", "iterations=2"]
    process = start(["train", *args, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    kill_after(process, lambda: cache.exists() and any(cache.rglob("*.npz")), random.Random(seed).uniform(0.0, 0.3))
    for entry in cache.rglob("*.npz"):  # every entry at a final path is whole
        with np.load(entry, allow_pickle=False) as stored:
            assert stored.files
    again = run_training(fast_config(*args[len(FAST):]), tmp_path / "again")
    plain = uninterrupted(*TRAINING[len(FAST):], "iterations=2")
    for key in (k for k in plain if not k.startswith("time/")):
        assert again[key] == pytest.approx(plain[key], rel=1e-10), key

