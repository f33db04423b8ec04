"""``python -m aenet_exp train [overrides]``: compose and validate the config, then ``training.run``.

User errors (a bad config value, a malformed data file) print one line naming the key or
file and exit with status 2, before anything is recorded.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import aenet_exp.config  # noqa: F401  registers the schema and resolvers
from aenet_exp.config.explain import composition_error_line
from aenet_exp.config.validation import OPTIMIZED_METRICS, ConfigError, check_resume_overrides, validate
from aenet_exp.errors import AenetWarning, UserError

USAGE = """usage: python -m aenet_exp {train,build-db,export} [-m] [key=value ...] [hydra options]

commands:
  train     train a potential (Hydra overrides; -m sweeps; --cfg job prints the config)
  build-db  build the HDF5 database data.database from data.path (streaming, atomic)
  export    write a trained potential in ænet's network format: run=<run dir | model file | runs:/<id>>
            format=aenet [out=<dir>] [rmin=<Å>] (docs/aenet_format.md)

examples:
  python -m aenet_exp train optimizer=adam force=subsampled
  python -m aenet_exp train -m optimizer.mu=1e-3,3e-3 force.fraction=0.1,0.3
  python -m aenet_exp build-db data.path='dft/*.xsf' data.database=dft.h5
  python -m aenet_exp export run=outputs/runs/<time> format=aenet
"""


def fail(message: str) -> None:
    """Report a user error without a traceback and exit with status 2."""
    print(f"aenet_exp: error: {message}", file=sys.stderr)
    sys.exit(2)


def observers_for(cfg: DictConfig) -> list:
    """The MLflow observer of this job (none when ``tracking.enabled`` is false)."""
    if not cfg.tracking.enabled:
        return []
    from aenet_exp.tracking.observer import MlflowObserver, recorded_run_id

    hydra_cfg = HydraConfig.get()
    sweep_dir = hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else None
    tracking = OmegaConf.to_container(cfg.tracking, resolve=True)
    if cfg.resume:  # record where the run was recorded, whatever this command line says
        from aenet_exp.training.checkpoint import load_checkpoint

        tracking = OmegaConf.to_container(OmegaConf.create(load_checkpoint(cfg.resume)["config"]).tracking)
    run_dir = cfg.resume or hydra_cfg.runtime.output_dir
    resume_id = recorded_run_id(cfg.resume) if cfg.resume else None
    return [MlflowObserver(tracking, list(hydra_cfg.overrides.task), sweep_dir, run_dir, resume_id)]


@hydra.main(config_path="pkg://aenet_exp.conf", config_name="train", version_base="1.3")
def train(cfg: DictConfig) -> float | None:
    """Hydra task: validate, train, print the final errors; returns ``optimized_metric`` for sweepers."""
    from aenet_exp import training
    from aenet_exp.training.distributed import launch_rank
    from aenet_exp.training.loop import Terminated

    try:
        validate(cfg)
        if cfg.resume:
            check_resume_overrides(list(HydraConfig.get().overrides.task))
        metrics = training.run(cfg, HydraConfig.get().runtime.output_dir, observers_for(cfg))  # rank 0's observe
    except UserError as error:
        fail(str(error).splitlines()[0])
    except KeyboardInterrupt as error:
        where = cfg.resume or HydraConfig.get().runtime.output_dir
        print(f"aenet_exp: interrupted ({error or 'SIGINT'}): the run is marked KILLED; its last finished epoch is "
              f"checkpointed in {where}: resume={where} continues", file=sys.stderr)
        sys.exit(143 if isinstance(error, Terminated) else 130)
    if launch_rank() > 0:  # under torchrun, rank 0 reports
        return None
    summary = ", ".join(f"{k} = {v:.5g}" for k, v in metrics.items() if k.startswith("final/"))
    print(f"done: {summary}")
    return optimized_value(metrics, cfg.optimized_metric)


def optimized_value(metrics: dict[str, float], name: str) -> float | None:
    """``name``'s final value (``final/<name>``, else its last epoch's), returned to the sweeper.

    A multirun job that did not produce it (no test structures, no forces) fails: the sweeper
    would have nothing to compare.
    """
    value = metrics.get(f"final/{name}", metrics.get(name))
    if value is None and HydraConfig.get().mode == RunMode.MULTIRUN:
        produced = [m for m in OPTIMIZED_METRICS if f"final/{m}" in metrics or m in metrics]
        fail(f"optimized_metric: this job produced no {name} (no test structures or no forces); expected one of {produced}")
    return value


@hydra.main(config_path="pkg://aenet_exp.conf", config_name="train", version_base="1.3")
def build_db(cfg: DictConfig) -> None:
    """Hydra task: build the HDF5 structure database ``data.database`` from ``data.path``."""
    from aenet_exp.data.hdf5 import build_database

    try:
        validate(cfg)
        if not cfg.data.database:
            raise ConfigError("data.database", "expected the path of the HDF5 database to build, e.g. data.database=train.h5")
        source = OmegaConf.to_container(cfg.data.path) if OmegaConf.is_config(cfg.data.path) else cfg.data.path
        d = cfg.data
        count = build_database(source, d.database, d.compression, d.compression_level, cfg.tracking.show_progress)
    except UserError as error:
        fail(str(error))
    print(f"wrote {count} structures to {cfg.data.database}")


def export() -> None:
    """``export run=... format=aenet [out=DIR]``: write ænet's network files and list them."""
    from aenet_exp.export.command import USAGE as EXPORT_USAGE
    from aenet_exp.export.command import export as run_export

    if sys.argv[1:] in (["-h"], ["--help"]):
        print(EXPORT_USAGE)
        return
    try:
        written = run_export(sys.argv[1:])
    except UserError as error:
        fail(str(error))
    for path in written:
        print(path)


class RunDirectoryCheck(Callback):
    """Hydra callback: refuse a run into a directory in use or holding another run, before Hydra writes
    ``.hydra/`` there (``training.run`` then takes the directory for the run)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from aenet_exp.rundir import KEY, refusal
        from aenet_exp.training.distributed import launch_rank

        if launch_rank() > 0 or config.hydra.mode == RunMode.MULTIRUN:
            return
        resume = OmegaConf.select(config, "resume")
        why = refusal(Path(resume or config.hydra.run.dir), resuming=resume is not None)
        if why is not None:
            fail(f"{KEY}: {why}")


COMMANDS = {"train": train, "build-db": build_db, "export": export}
# build-db writes the database and nothing else: no run folder, no .hydra record.
BUILD_DB_OVERRIDES = ["hydra.run.dir=.", "hydra.output_subdir=null"]


def launch_overrides(args: list[str]) -> list[str]:
    """Hydra overrides of this process. Under torchrun, ranks other than 0 write no ``.hydra/`` record
    into the run directory, which is rank 0's. A resumed run works in its own directory and leaves its
    ``.hydra/`` record as it was (Hydra makes no new folder for it)."""
    from aenet_exp.training.distributed import launch_rank

    extra = ["hydra.output_subdir=null"] if launch_rank() > 0 else []
    resume = next((arg.split("=", 1)[1] for arg in args if arg.startswith("resume=")), None)
    if resume and "-m" not in args and "--multirun" not in args:
        extra += [f"hydra.run.dir={resume}", "hydra.output_subdir=null"]
    return list(dict.fromkeys(extra))


def show_warnings() -> None:
    """aenet_exp's warnings as one line each (``aenet_exp: warning: ...``), every time (each job of a sweep)."""
    default = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        if issubclass(category, AenetWarning):
            return f"aenet_exp: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
    warnings.simplefilter("always", AenetWarning)


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``python -m aenet_exp <command> ...`` to the command's Hydra entry point."""
    show_warnings()
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command = COMMANDS.get(args[0])
    if command is None:
        fail(f"unknown command {args[0]!r}; expected one of {sorted(COMMANDS)}")
    extra = launch_overrides(args[1:]) if command is train else BUILD_DB_OVERRIDES if command is build_db else []
    sys.argv = [f"aenet_exp {args[0]}", *args[1:], *extra]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # composition errors reach us (below), not Hydra's multi-line report
    try:
        command()
    except (HydraException, OmegaConfBaseException) as error:
        fail(composition_error_line(error))
