"""``python -m aenet_exp <command> ...``: dispatch the command line to the command's Hydra app
(:mod:`aenet_exp.build.apps`), or print its help.

User errors (a bad config value, a malformed data file) print one line naming the key or
file and exit with status 2, before anything is recorded; warnings are one line each.
"""

from __future__ import annotations

import os
import sys
import warnings

import aenet_exp.config  # noqa: F401  registers the schema and resolvers
from aenet_exp.cli.common import fail, stopped
from aenet_exp.cli.help import command_help, usage
from aenet_exp.config.commands import COMMANDS
from aenet_exp.errors import AenetWarning
from aenet_exp.interrupts import terminated_as_interrupt


def launch_overrides(args: list[str]) -> list[str]:
    """Hydra overrides of a ``train`` or ``learn`` process besides ``args``: what they imply
    (:func:`aenet_exp.build.prepare.implied_overrides`). Under torchrun, ranks other than 0 write no ``.hydra/`` record
    into the run directory, which is rank 0's. A resumed run (or campaign) works in its own directory and leaves its
    ``.hydra/`` record as it was (Hydra makes no new folder for it)."""
    from aenet_exp.build.prepare import implied_overrides

    rank = int(os.environ.get("RANK", "0"))  # torchrun's (training.distributed.launch_rank, without torch)
    extra = [*implied_overrides(args), *(["hydra.output_subdir=null"] if rank > 0 else [])]
    resume = next((arg.split("=", 1)[1] for arg in args if arg.startswith("resume=")), None)
    if resume and "-m" not in args and "--multirun" not in args:
        extra += [f"hydra.run.dir={resume}", "hydra.output_subdir=null"]
    return list(dict.fromkeys(extra))


def with_overrides(args: list[str], extra: list[str]) -> list[str]:
    """``args`` with the ``extra`` overrides right after its last override: Hydra's parser takes one run of them
    (overrides on both sides of a flag are refused)."""
    last = max((k for k, arg in enumerate(args) if "=" in arg and not arg.startswith("-")), default=len(args) - 1)
    return [*args[: last + 1], *extra, *args[last + 1 :]]


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
    """Dispatch ``python -m aenet_exp <command> ...`` to the command's Hydra app."""
    show_warnings()
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        fail(f"unknown command {name!r}; expected one of {sorted(COMMANDS)}")
    if "--help" in rest or "-h" in rest:
        print(command_help(name))
        return
    with terminated_as_interrupt():  # from here on, SIGTERM stops a command as Ctrl-C does: in one line
        try:
            from aenet_exp.build.apps import launch  # start-up: Hydra's apps only for a command that runs

            launch(name, with_overrides(rest, launch_overrides(rest)) if name in ("train", "learn") else rest)
        except KeyboardInterrupt as error:  # stopped before a command's own handling (composing, importing)
            stopped(error)
