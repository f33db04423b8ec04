"""``python -m aenet_exp export run=... format=aenet [out=DIR]``: write ænet's network files and list them."""

from __future__ import annotations

from aenet_exp.cli.common import fail
from aenet_exp.errors import UserError


def export(args: list[str]) -> None:
    from aenet_exp.export.command import USAGE
    from aenet_exp.export.command import export as run_export

    if args in (["-h"], ["--help"]):
        print(USAGE)
        return
    try:
        written = run_export(args)
    except UserError as error:
        fail(str(error))
    for path in written:
        print(path)
