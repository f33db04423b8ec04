"""Shared fixtures and helpers: the small data files in tests/fixtures (no network, no data outside the
repository), composed configs, a recording callback, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# One torch thread in this process and in every CLI subprocess (they inherit the environment), unless the
# environment says otherwise: the tests' tensors are tiny, and on a machine with few cores, shared by the test
# process, its subprocesses and other jobs, torch's thread pool waits on busy cores (a repeat_interleave of
# 100 elements took 3-20 ms with 2 threads, 0.02 ms with 1). Results within a run do not depend on it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import aenet_exp.config  # noqa: F401  registers the schema
from aenet_exp.build.apps import run_command
from aenet_exp.config.commands import COMMANDS
from aenet_exp.descriptor import ChebyshevDescriptor
from aenet_exp.model import Potential
from aenet_exp.build.training import run_training
from aenet_exp.training.events import Callback

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # also where torch was imported before this file

DATA = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]
SMALL = DATA / "tio2-small"
E_ATOMIC = {"O": -432.503149303, "Ti": -1604.604515075}  # eV, the TiO2 set's references

# Settings that keep a training run to a second or two: a short descriptor and 16 tiny structures.
FAST = [
    f"data.path={SMALL}",
    "data.E_atomic={O: -432.503149303, Ti: -1604.604515075}",  # data.path names new data: its references with it
    "descriptor.rad_order=4",
    "descriptor.rad_cutoff=4.0",
    "descriptor.ang_order=2",
    "descriptor.ang_cutoff=3.0",
    "model.hidden=[4]",
    "model.activations=[tanh]",
    "optimizer.batchsize=4",
    "data.testpercent=25",
    "iterations=2",
    "tracking.show_progress=false",
    "caching=none",  # every cache is tested against this plain baseline (tests/training/test_features.py)
]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def compose_command(name: str, *overrides: str) -> DictConfig:
    """The composed config of the command ``name`` with ``overrides``, as the CLI would build it."""
    GlobalHydra.instance().clear()
    with initialize_config_module("aenet_exp.conf", version_base="1.3"):
        return compose(COMMANDS[name].config_name, overrides=list(overrides))


def compose_train(*overrides: str) -> DictConfig:
    """The composed ``train`` config with ``overrides``, as the CLI would build it."""
    return compose_command("train", *overrides)


def command(name: str, args: list[str]) -> list[Path]:
    """Run the command ``name`` (export, select, ensemble) with ``key=value`` ``args`` in this process, as the CLI
    does: composed, validated, typed; the files it wrote (UserError on bad input)."""
    return run_command(name, compose_command(name, *args))


@pytest.fixture
def fast_config():
    """Compose a quick-training config; extra overrides win over the fast ones."""

    def make(*overrides: str) -> DictConfig:
        return compose_train(*FAST, "tracking.enabled=false", *overrides)

    return make


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m aenet_exp ...`` in a subprocess, as a user runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "aenet_exp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


class Recorder(Callback):
    """A callback keeping what training reports."""

    def __init__(self):
        self.config, self.facts, self.epochs, self.result, self.error = None, None, [], None, None

    def on_start(self, config, facts):
        self.config, self.facts = config, facts

    def on_epoch_end(self, epoch, metrics):
        self.epochs.append(dict(metrics))

    def on_end(self, result):
        self.result = result

    def on_failure(self, error):
        self.error = error


def train(cfg, tmp_path):
    """Run ``cfg`` into ``tmp_path``; the final metrics and a :class:`Recorder` of the run."""
    recorder = Recorder()
    metrics = run_training(cfg, tmp_path, [recorder])
    return metrics, recorder


class Counter:
    """Wraps ``target``, counting its calls."""

    def __init__(self, target):
        self.target, self.calls = target, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.target(*args, **kwargs)


def make_potential(species, seed=0, **descriptor_settings) -> Potential:
    """An untrained float64 potential with fixed normalisation, seeded."""
    torch.manual_seed(seed)
    settings = dict(rad_order=12, rad_cutoff=6.0, ang_order=5, ang_cutoff=4.0) | descriptor_settings
    descriptor = ChebyshevDescriptor(species, **settings, dtype=torch.float64)
    hidden = {s: [8, 6] for s in species}
    activations = {s: ["tanh", "sigmoid"] for s in species}
    potential = Potential(descriptor, hidden, activations)
    potential.set_normalization(energy_shift=-3.0, energy_scale=0.7, atomic_energies={s: -1.0 - k for k, s in enumerate(species)})
    return potential


def store_uri(tmp_path: Path) -> str:
    """A SQLite MLflow store in ``tmp_path``."""
    return f"sqlite:///{tmp_path}/mlflow.db"


def runs_of(uri: str, experiment: str = "aenet_exp"):
    """A client of the store at ``uri`` and the runs of ``experiment`` there."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client, ([] if found is None else client.search_runs([found.experiment_id]))


class CliRun:
    """A finished ``python -m aenet_exp`` run shared by tests that only read it: its result, store and folder."""

    def __init__(self, result: subprocess.CompletedProcess, uri: str, cwd: Path):
        self.result, self.uri, self.cwd = result, uri, cwd


@pytest.fixture(scope="session")
def recorded_cli_run(tmp_path_factory) -> CliRun:
    """One training through the CLI into ``run`` and a SQLite store: forces subsampled, 3 epochs, predictions and
    timings saved, its model registered as ``tio2_cli``. Each test reading it checks one side of that run."""
    cwd = tmp_path_factory.mktemp("cli-run")
    uri = store_uri(cwd)
    result = run_cli(
        "train", *FAST, f"tracking.uri={uri}", "force=subsampled", "force.fraction=0.5", "iterations=3",
        "tracking.save_energies=true", "tracking.save_forces=true", "tracking.timing=true",
        "tracking.register=tio2_cli", "hydra.run.dir=run", cwd=cwd,
    )
    return CliRun(result, uri, cwd)


@pytest.fixture(scope="session")
def grid_sweep(tmp_path_factory) -> CliRun:
    """One Hydra multirun through the CLI: a 2 × 2 grid over optimizer.mu and force.weight, 2 epochs each, recorded
    in one SQLite store. Each test reading it checks one side of that sweep."""
    cwd = tmp_path_factory.mktemp("grid-sweep")
    uri = store_uri(cwd)
    result = run_cli("train", "-m", *FAST, f"tracking.uri={uri}", "iterations=2", "optimizer.mu=1e-3,3e-3",
                     "force.weight=0.1,0.3", cwd=cwd, timeout=600)
    return CliRun(result, uri, cwd)
