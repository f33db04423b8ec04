"""What every command shares: one line for a user error, exit status 2; one line for an interruption, exit status
143 (SIGTERM) or 130 (SIGINT)."""

from __future__ import annotations

import sys
from typing import NoReturn

from aenet_exp.interrupts import Terminated


def fail(message: str) -> None:
    """Report a user error without a traceback and exit with status 2."""
    print(f"aenet_exp: error: {message}", file=sys.stderr)
    sys.exit(2)


def stopped(error: KeyboardInterrupt, *facts: str) -> NoReturn:
    """Report a command stopped by SIGINT or SIGTERM (:class:`aenet_exp.interrupts.Terminated`) in one line:
    what it leaves, from the notes the interruption gathered on its way out (an MLflow run marked KILLED, a saved
    committee) and ``facts``, else that nothing was written; exit with status 143 for SIGTERM, 130 for SIGINT."""
    said = [*getattr(error, "__notes__", ()), *facts] or ["nothing was written"]
    print(f"aenet_exp: interrupted ({error or 'SIGINT'}): {'; '.join(said)}", file=sys.stderr)
    sys.exit(143 if isinstance(error, Terminated) else 130)
