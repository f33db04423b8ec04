"""The Hydra app of every command: compose the config (``conf/<command>.yaml``), validate it, build the typed
objects the command takes, run it. :func:`aenet_exp.cli.main` dispatches the command line to these."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aenet_exp.build.prepare import campaign_config, prepare
from aenet_exp.build.train import ending, observers_for, optimized_value
from aenet_exp.cli.common import fail, stopped
from aenet_exp.config.commands import COMMANDS
from aenet_exp.config.explain import composition_error_line
from aenet_exp.config.validation import check_boolean_overrides, check_rules, validate_build_db, validate_ensemble
from aenet_exp.errors import UserError
from aenet_exp.rundir import CHECKPOINT_FILE, RunDirectory, remove_unused_run_directory

CONF = "pkg://aenet_exp.conf"


def options(cfg: DictConfig) -> Any:
    """A validated config as its schema dataclass (each group as its own), the typed options of a command."""
    return OmegaConf.to_object(cfg)


# command -> (its validation, the module whose function of the command's name takes the typed options and
# returns the files written)
KEY_VALUE_COMMANDS: dict[str, tuple[Callable[[DictConfig], None], str]] = {
    "export": (check_rules, "aenet_exp.export.command"),
    "select": (check_rules, "aenet_exp.selection.command"),
    "ensemble": (validate_ensemble, "aenet_exp.ensemble.command"),
}


def run_command(name: str, cfg: DictConfig) -> list[Path]:
    """Validate ``cfg`` and run the command ``name`` (export, select, ensemble) with its typed options; the files
    written (UserError on bad input)."""
    check, module = KEY_VALUE_COMMANDS[name]
    check(cfg)
    command = getattr(import_module(module), name)  # imported once the config is valid (start-up: torch, MLflow)
    return command(options(cfg))


def report(name: str, cfg: DictConfig) -> None:
    """Run ``name``: print the files it wrote; one line and exit 2 for a user error, one line and exit 143 for
    SIGTERM (its MLflow run, if it had one, marked KILLED)."""
    try:
        check_boolean_overrides(cfg, list(HydraConfig.get().overrides.task))
        written = run_command(name, cfg)
    except UserError as error:
        fail(str(error))
    except KeyboardInterrupt as error:
        stopped(error)
    for path in written:
        print(path)


@hydra.main(config_path=CONF, config_name="export", version_base="1.3")
def export_app(cfg: DictConfig) -> None:
    report("export", cfg)


@hydra.main(config_path=CONF, config_name="select", version_base="1.3")
def select_app(cfg: DictConfig) -> None:
    report("select", cfg)


@hydra.main(config_path=CONF, config_name="ensemble", version_base="1.3")
def ensemble_app(cfg: DictConfig) -> None:
    report("ensemble", cfg)


@hydra.main(config_path=CONF, config_name="build_db", version_base="1.3")
def build_db_app(cfg: DictConfig) -> None:
    """Build the HDF5 structure database ``data.database`` from ``data.path`` (with ``augment=taylor``, each
    structure with forces followed by its Taylor children, as training makes them)."""
    from aenet_exp.data.hdf5 import build_database  # start-up: h5py and torch once the config is valid
    from aenet_exp.build.training import taylor_expansion

    try:
        check_boolean_overrides(cfg, list(HydraConfig.get().overrides.task))
        validate_build_db(cfg)
        settings = options(cfg)
        data = settings.data
        count = build_database(data.path, data.database, data.compression, data.compression_level,
                               settings.show_progress, taylor_expansion(cfg))
    except UserError as error:
        fail(str(error))
    print(f"wrote {count} structures to {data.database}")


def drop_if_unused(directory: Path, resume: str | None, rank: int = 0) -> None:
    """A new run's or campaign's folder that holds only what starting it put there is removed by rank 0, whose
    folder it is (not by a resumed one, nor by torchrun's other ranks)."""
    if not resume and rank == 0:
        remove_unused_run_directory(directory)


def resumable(directory: Path) -> str:
    """What a stopped training leaves to continue: its checkpoint, or nothing."""
    if not (directory / CHECKPOINT_FILE).is_file():
        return "no epoch had finished: nothing to resume"
    return f"its last finished epoch is checkpointed in {directory}: resume={directory} continues"


@hydra.main(config_path=CONF, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float | None:
    """Prepare, train, print the final errors and where to look; returns ``optimized_metric`` to a sweeper."""
    from aenet_exp.build.training import run_training  # start-up: torch once the config is valid
    from aenet_exp.training.distributed import launch_rank

    hydra_cfg = HydraConfig.get()
    output_dir = hydra_cfg.runtime.output_dir
    try:
        prepare(cfg, list(hydra_cfg.overrides.task))
        observers = observers_for(cfg)
        metrics = run_training(cfg, output_dir, observers)  # rank 0's observe
    except UserError as error:
        drop_if_unused(Path(output_dir), cfg.resume, launch_rank())
        fail(str(error).splitlines()[0])
    except KeyboardInterrupt as error:
        drop_if_unused(Path(output_dir), cfg.resume, launch_rank())
        stopped(error, resumable(Path(cfg.resume or output_dir)))
    if launch_rank() > 0:  # under torchrun, rank 0 reports
        return None
    print(ending(metrics, cfg.resume or output_dir, observers))
    return optimized_value(metrics, cfg.optimized_metric)


@hydra.main(config_path=CONF, config_name="learn", version_base="1.3")
def learn_app(cfg: DictConfig) -> None:
    """Run (or continue, with ``resume=``) an active-learning campaign in its folder; its table and MLflow run."""
    from aenet_exp.build.learn import interrupted, run_campaign  # start-up: torch, ASE

    hydra_cfg = HydraConfig.get()
    directory = Path(cfg.resume or hydra_cfg.runtime.output_dir)
    try:
        cfg = campaign_config(cfg, list(hydra_cfg.overrides.task))
        owned = RunDirectory.claim(directory, resuming=cfg.resume is not None)
        try:
            run_campaign(cfg, directory)
        finally:
            owned.release()
    except UserError as error:
        fail(str(error).splitlines()[0])
    except KeyboardInterrupt as error:
        drop_if_unused(directory, cfg.resume)
        stopped(error, *interrupted(directory))


# command -> its Hydra app
APPS = {"train": train_app, "build-db": build_db_app, "export": export_app, "select": select_app,
        "ensemble": ensemble_app, "learn": learn_app}


def launch(name: str, args: list[str]) -> None:
    """Run the Hydra app of the command ``name`` with the command-line ``args``; Hydra's and OmegaConf's
    composition errors (an unknown key, a wrong type) as one line, exit 2."""
    sys.argv = [f"aenet_exp {name}", *args]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # composition errors reach us (below), not Hydra's multi-line report
    try:
        APPS[name]()
    except (HydraException, OmegaConfBaseException) as error:
        fail(composition_error_line(error, COMMANDS[name].schema))
