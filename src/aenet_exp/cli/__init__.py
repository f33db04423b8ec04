"""``python -m aenet_exp <command>``: compose and validate the config, then run the command.

User errors (a bad config value, a malformed data file) print one line naming the key or
file and exit with status 2, before anything is recorded; warnings are one line each.
"""

from __future__ import annotations

import os
import sys
import warnings

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

import aenet_exp.config  # noqa: F401  registers the schema and resolvers
from aenet_exp.cli.commands import KEY_VALUE_COMMANDS, key_value_command
from aenet_exp.cli.common import fail
from aenet_exp.config.explain import composition_error_line
from aenet_exp.errors import AenetWarning

USAGE = """usage: python -m aenet_exp {train,build-db,export,select,ensemble} [-m] [key=value ...] [hydra options]

commands:
  train     train a potential (Hydra overrides; -m sweeps; --cfg job prints the config; --help lists every key)
  build-db  build the HDF5 database data.database from data.path (streaming, atomic)
  export    write a trained potential in ænet's network format: run=<run dir | model file | runs:/<id>>
            format=aenet [out=<dir>] [rmin=<Å>] (docs/aenet_format.md)
  select    rank candidate structures by a committee's disagreement and write the top n for DFT: run=<committee>
            pool=<structures | .h5> [n=50] [out=selected.xyz] [by=energy|forces]
  ensemble  combine finished runs (same data and descriptor) into one calibrated committee: runs=<id,id,...> or
            sweep=<parent run id> [out=<dir>]

examples:
  python -m aenet_exp train optimizer=adam force=subsampled
  python -m aenet_exp train -m optimizer.mu=1e-3,3e-3 force.weight=0.1,0.3
  python -m aenet_exp build-db data.path='dft/*.xsf' data.database=dft.h5
  python -m aenet_exp export run=outputs/runs/<time> format=aenet
  python -m aenet_exp select run=outputs/runs/<time> pool='md/*.xyz' n=50 by=forces
"""
# build-db writes the database and nothing else: no run folder, no .hydra record.
BUILD_DB_OVERRIDES = ["hydra.run.dir=.", "hydra.output_subdir=null"]


def launch_overrides(args: list[str]) -> list[str]:
    """Hydra overrides of a ``train`` process. Under torchrun, ranks other than 0 write no ``.hydra/`` record
    into the run directory, which is rank 0's. A resumed run works in its own directory and leaves its
    ``.hydra/`` record as it was (Hydra makes no new folder for it)."""
    rank = int(os.environ.get("RANK", "0"))  # torchrun's (training.distributed.launch_rank, without torch)
    extra = ["hydra.output_subdir=null"] if rank > 0 else []
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
    name, rest = args[0], args[1:]
    if name == "train" and ("--help" in rest or "-h" in rest):
        from aenet_exp.cli.help import train_help

        print(train_help())
        return
    if name in KEY_VALUE_COMMANDS:
        key_value_command(name, rest)
        return
    if name == "train":
        from aenet_exp.cli.train import train as command

        extra = launch_overrides(rest)
    elif name == "build-db":
        from aenet_exp.cli.build_db import build_db as command

        extra = BUILD_DB_OVERRIDES
    else:
        fail(f"unknown command {name!r}; expected one of ['build-db', 'ensemble', 'export', 'select', 'train']")
    sys.argv = [f"aenet_exp {name}", *rest, *extra]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # composition errors reach us (below), not Hydra's multi-line report
    try:
        command()
    except (HydraException, OmegaConfBaseException) as error:
        fail(composition_error_line(error))
