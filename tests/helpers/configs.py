"""Configs composed as the CLI composes them, the fast training settings, and the commands run in this process."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import aenet_exp.config  # noqa: F401  registers the schema
from aenet_exp.build.apps import run_command
from aenet_exp.build.prepare import implied_overrides
from aenet_exp.config.commands import COMMANDS

from .paths import SMALL

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


def compose_command(name: str, *overrides: str) -> DictConfig:
    """The composed config of the command ``name`` with ``overrides``, as the CLI would build it (for ``train`` and
    ``learn`` with what the overrides imply)."""
    implied = implied_overrides(overrides) if name in ("train", "learn") else []
    GlobalHydra.instance().clear()
    with initialize_config_module("aenet_exp.conf", version_base="1.3"):
        return compose(COMMANDS[name].config_name, overrides=[*overrides, *implied])


def compose_train(*overrides: str) -> DictConfig:
    """The composed ``train`` config with ``overrides``, as the CLI would build it."""
    return compose_command("train", *overrides)


def command(name: str, args: list[str]) -> list[Path]:
    """Run the command ``name`` (export, select, ensemble) with ``key=value`` ``args`` in this process, as the CLI
    does: composed, validated, typed; the files it wrote (UserError on bad input)."""
    return run_command(name, compose_command(name, *args))
