"""The one way aenet_exp writes a file: a temporary file beside the target, flushed to disk, renamed.

A reader never sees a half-written file at a final path: a crash (even SIGKILL) leaves either the
old file or the new one, plus at most a hidden ``.<name>.<pid>-<random>.tmp`` beside it. Written
files get the mode the process's umask gives new files (not the 0600 of ``mkstemp``), so
collaborators on a shared store can read them.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aenet_exp.errors import UnreadableFile, UserError, first_line

TEMPORARY_SUFFIX = ".tmp"


class WriteFailed(UserError, OSError):
    """A file that could not be written (a full disk, a read-only place): one line naming it; still an OSError."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(error.errno, error.strerror or str(error), str(path))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def temporary_path(path: Path) -> Path:
    """A fresh hidden name beside ``path`` that says which process writes it."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def umask_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask (e.g. 0644 for umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path``.

    The temporary file is fsynced before the rename and the directory after it. On any error,
    the temporary file is removed and ``path`` is left as it was; an ``OSError`` (a full disk) is
    raised as :class:`WriteFailed` naming ``path``.
    """
    target = Path(path)
    temporary = temporary_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, umask_mode())
        os.replace(temporary, target)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteFailed):
            raise WriteFailed(target, error) from None
        raise
    sync_directory(target.parent)


def sync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename) to disk, where the platform allows it."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_atomically(path: str | Path, content: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``content`` (text, bytes, or a function writing the temporary path it is given) to ``path``."""
    with atomic_path(path) as temporary:
        if callable(content):
            content(temporary)
        elif isinstance(content, bytes):
            temporary.write_bytes(content)
        else:
            temporary.write_text(content)
    return Path(path)


def save_tensors(path: str | Path, state: dict) -> Path:
    """Write ``state`` with ``torch.save`` atomically to ``path``, through a Python file object: a failed write (a
    full disk) is an ``OSError`` (:class:`WriteFailed`), not torch's ``RuntimeError``."""
    import torch  # seconds to import: only for tensor files

    def save(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)

    return write_atomically(path, save)


def load_tensors(path: str | Path, what: str) -> dict:
    """The dict of tensors and plain data in ``path``, read with ``torch.load(weights_only=True)`` (no code runs).

    Any failure (missing, a directory, truncated, random bytes, a pickle of objects, not a dict)
    is an :class:`~aenet_exp.errors.UnreadableFile` naming ``path`` and ``what`` was expected.
    """
    import torch  # seconds to import: files is read by config validation and the data readers, which need no torch

    path = Path(path)
    if not path.is_file():
        raise UnreadableFile(f"{path}: no such file (expected {what})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file it cannot read
        raise UnreadableFile(f"{path}: not {what}: {first_line(error)}") from None
    if not isinstance(state, dict):
        raise UnreadableFile(f"{path}: not {what} (holds a {type(state).__name__})")
    return state


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove the temporary files and folders (:func:`temporary_path`) in ``directory`` of processes that no longer
    run.

    A writer killed with SIGKILL cannot clean up after itself; the next run into the same place does.
    Returns what was removed.
    """
    removed = []
    for path in Path(directory).glob(f".*{TEMPORARY_SUFFIX}"):
        pid = temporary_owner(path)
        if pid is not None and pid != os.getpid() and not process_alive(pid):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def temporary_owner(path: Path) -> int | None:
    """The process id in a temporary file's name (``.<name>.<pid>-<random>.tmp``), or None for other files."""
    stem = path.name.removesuffix(TEMPORARY_SUFFIX)
    owner = stem.rsplit(".", 1)[-1].split("-", 1)[0]
    return int(owner) if owner.isdigit() else None
