"""What every command shares: one line for a user error, exit status 2."""

from __future__ import annotations

import sys


def fail(message: str) -> None:
    """Report a user error without a traceback and exit with status 2."""
    print(f"aenet_exp: error: {message}", file=sys.stderr)
    sys.exit(2)
