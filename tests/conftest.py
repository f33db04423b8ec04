"""Fixtures: the small data files copied into tests/data; the tests need no network and no data outside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


import os
import subprocess
import sys

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import aenet_exp.config  # noqa: F401  registers the schema

ROOT = Path(__file__).resolve().parents[1]
SMALL = DATA / "tio2-small"

# Settings that keep a training run to a second or two: a short descriptor and 16 tiny structures.
FAST = [
    f"data.path={SMALL}",
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
]


def compose_train(*overrides: str) -> DictConfig:
    """The composed ``train`` config with ``overrides``, as the CLI would build it."""
    GlobalHydra.instance().clear()
    with initialize_config_module("aenet_exp.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


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
