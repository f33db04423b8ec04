"""The commands that take ``key=value`` arguments rather than Hydra overrides: ``export`` (ænet's network files),
``select`` (new DFT work chosen by a committee) and ``ensemble`` (a committee made of finished runs)."""

from __future__ import annotations

from importlib import import_module

from aenet_exp.cli.common import fail
from aenet_exp.errors import UserError

# command -> its module, which has USAGE and the command's function of the same name (returning the files written)
KEY_VALUE_COMMANDS = {
    "export": "aenet_exp.export.command", "select": "aenet_exp.selection.command", "ensemble": "aenet_exp.ensemble.command",
}


def key_value_command(name: str, args: list[str]) -> None:
    """Run ``name`` with ``args``: its usage for -h, one line and exit 2 for a user error; prints the files written."""
    module = import_module(KEY_VALUE_COMMANDS[name])
    if args in (["-h"], ["--help"]):
        print(module.USAGE)
        return
    try:
        written = getattr(module, name)(args)
    except UserError as error:
        fail(str(error))
    for path in written:
        print(path)
