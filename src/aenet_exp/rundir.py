"""A run directory: the names of the files a run writes there, and its ownership by one live run.

A run holds an exclusive lock (``fcntl.flock``) on ``<dir>/.aenet_exp.lock`` for as long as it
lives; the operating system releases it when the process ends, however it ends. A second run
into a directory that is locked, or that holds a run's files, is refused (one line, exit 2),
unless it resumes that run. Claiming a directory also removes the temporary files that killed
processes left there.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from pathlib import Path

from aenet_exp.errors import ConfigError
from aenet_exp.files import remove_stale_temporaries

MODEL_FILE = "potential.pt"  # the trained potential (also in the run's MLflow artifacts)
CHECKPOINT_FILE = "checkpoint.pt"  # the latest; older ones retained (checkpoint.keep) and the best in RETAINED/
RETAINED = "checkpoints"
BEST_MODEL_FILE = "potential-best.pt"  # the weights of the best epoch by the early-stopping metric
CONFIG_FILE = "config.yaml"  # the resolved config the run trained with
RUN_ID_FILE = "mlflow_run_id"  # the MLflow run a training recorded to
LOCK_FILE = ".aenet_exp.lock"
RUN_FILES = (CHECKPOINT_FILE, MODEL_FILE, RUN_ID_FILE)  # any of them: the directory holds a run
KEY = "hydra.run.dir"


def holds_run(directory: Path) -> bool:
    """Whether a run has written its files to ``directory``."""
    return any((directory / name).exists() for name in RUN_FILES)


def holder(directory: Path) -> str:
    """Who holds the lock of ``directory``, as the lock file says (``process 123 on host``)."""
    try:
        return (directory / LOCK_FILE).read_text().strip() or "another process"
    except OSError:
        return "another process"


def in_use(directory: Path, key: str) -> str:
    """Why ``directory`` may not be taken while another process holds it."""
    return f"{directory} is in use by a live run ({holder(directory)}); give another {key}"


def taken(directory: Path, key: str) -> str:
    """Why ``directory``, holding a run's files, may not be written by another run (a training may resume it)."""
    return f"{directory} holds a run already; give another {key}" + (
        f", or continue that run with resume={directory}" if key == KEY else ""
    )


def refusal(directory: Path, resuming: bool, key: str = KEY) -> str | None:
    """Why a run may not start in ``directory`` given as ``key`` (None: it may), without taking it."""
    if not directory.exists():
        return None
    handle = try_lock(directory, create=False)
    if handle is False:
        return in_use(directory, key)
    if handle is not None:
        os.close(handle)
    if holds_run(directory) and not resuming:
        return taken(directory, key)
    return None


def try_lock(directory: Path, create: bool = True) -> int | bool | None:
    """A descriptor of the directory's lock file, locked; False when another process holds it; None when
    there is no lock file and ``create`` is false."""
    path = directory / LOCK_FILE
    try:
        handle = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        return False
    return handle


class RunDirectory:
    """``directory`` owned by this process's run until :meth:`release` (or until the process ends)."""

    def __init__(self, directory: Path, handle: int):
        self.directory, self.handle = directory, handle

    @classmethod
    def claim(cls, directory: str | Path, resuming: bool = False, key: str = KEY) -> "RunDirectory":
        """Take ``directory`` for a run (``resuming``: the run that is there); ConfigError naming ``key`` (the
        training's ``hydra.run.dir``, an ``ensemble``'s ``out``) when it cannot be written, is in use, or holds
        another run."""
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            handle = try_lock(directory)
        except OSError as error:
            raise ConfigError(key, f"cannot write the output directory {directory}: {error.strerror}") from None
        if handle is False:
            raise ConfigError(key, in_use(directory, key))
        if holds_run(directory) and not resuming:
            os.close(handle)
            raise ConfigError(key, taken(directory, key))
        os.ftruncate(handle, 0)
        os.write(handle, f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        remove_stale_temporaries(directory)
        return cls(directory, handle)

    def release(self) -> None:
        """Let the directory go (the lock file stays, saying who last held it)."""
        if self.handle is not None:
            os.close(self.handle)
            self.handle = None


HYDRA_RECORD = ".hydra"


def remove_unused_run_directory(directory: Path) -> None:
    """Remove ``directory`` when it holds nothing but what starting a run put there (Hydra's record, the lock):
    a run refused before training leaves no empty folder behind."""
    if not directory.is_dir():
        return
    if {p.name for p in directory.iterdir()} <= {HYDRA_RECORD, LOCK_FILE}:
        shutil.rmtree(directory, ignore_errors=True)
