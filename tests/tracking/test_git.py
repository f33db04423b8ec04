"""The project's git commit for run provenance (tracking/git.py)."""

from __future__ import annotations

import re
import subprocess

from aenet_exp.tracking import project_git_commit

from helpers import ROOT


def git(*args: str) -> str:
    """``git args`` in the repository holding the tests; fails the test where it is no git checkout."""
    done = subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, f"the tests run from a git checkout: git {' '.join(args)} said {done.stderr.strip()}"
    return done.stdout.strip()


def test_project_git_commit_names_a_commit() -> None:
    """The commit of the checkout the package is imported from (editable install): HEAD, ``-dirty`` when modified."""
    head, modified = git("rev-parse", "HEAD"), bool(git("status", "--porcelain"))
    commit = project_git_commit()
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)
    assert commit == head + ("-dirty" if modified else "")
