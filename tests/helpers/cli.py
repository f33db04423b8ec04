"""The CLI as a subprocess, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m aenet_exp ...`` in a subprocess, as a user runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "aenet_exp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


class CliRun:
    """A finished ``python -m aenet_exp`` run shared by tests that only read it: its result, store and folder."""

    def __init__(self, result: subprocess.CompletedProcess, uri: str, cwd: Path):
        self.result, self.uri, self.cwd = result, uri, cwd
