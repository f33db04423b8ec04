"""The git commit of the project checkout, for run provenance."""

from __future__ import annotations

import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def project_git_commit() -> str | None:
    """Return ``git rev-parse HEAD`` of the checkout holding this package, ``-dirty`` if modified.

    None when the package is not in a git checkout or git is unavailable.
    """
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None
    return f"{commit}-dirty" if _git("status", "--porcelain") else commit


def _git(*args: str) -> str | None:
    """Run a read-only git command in the package directory; None on any failure."""
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()
