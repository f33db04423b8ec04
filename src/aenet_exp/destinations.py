"""Where a command writes (``select``'s file, ``ensemble``'s and ``export``'s folders), checked before the work.

A place that cannot be written, a directory given for a file, a path under a file: one line naming the key, before
a pool is evaluated or runs are combined, and nothing is left there by the check. A symbolic link given as ``out=``
is followed: the file or folder it points to is written, the link stays.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from aenet_exp.errors import ConfigError
from aenet_exp.files import temporary_path


def followed(location: str, key: str) -> Path:
    """``location``, or where it points when it is a symbolic link; ConfigError naming ``key`` for an empty one."""
    if not location.strip():
        raise ConfigError(key, "is empty; give a path")
    path = Path(location)
    return path.resolve() if path.is_symlink() else path


def check_writable(directory: Path, key: str) -> None:
    """ConfigError naming ``key`` unless a file can be created in ``directory`` (or, when it does not exist yet,
    in its nearest existing ancestor, where it would be made); the probe file is removed at once."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(key, f"{existing} is a file, not a directory; give a path in a directory")
    probe = temporary_path(existing / "probe")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as error:
        raise ConfigError(key, f"cannot write in {existing}: {error.strerror}") from None
    probe.unlink()


def writable_file(location: str, key: str) -> Path:
    """The file ``location`` names (links followed), checked to be writable; ConfigError naming ``key``."""
    target = followed(location, key)
    if target.is_dir():
        raise ConfigError(key, f"{target} is a directory; give a file name")
    check_writable(target.parent, key)
    return target


def writable_folder(location: str, key: str) -> Path:
    """The folder ``location`` names (links followed), checked to be writable; ConfigError naming ``key``."""
    target = followed(location, key)
    if target.exists() and not target.is_dir():
        raise ConfigError(key, f"{target} is a file; give a directory")
    check_writable(target, key)
    return target


def replace_folder(target: Path, fresh: Path) -> None:
    """Put the folder ``fresh`` (written beside ``target``) in place of ``target``, whose old content goes: two
    renames, so a reader sees the old folder or the new one, and no file of the old one stays among the new."""
    old = temporary_path(target)
    if target.exists():
        os.replace(target, old)
    os.replace(fresh, target)
    shutil.rmtree(old, ignore_errors=True)
