"""The error a user sees when their data cannot be used."""

from __future__ import annotations

from pathlib import Path

from aenet_exp.errors import UserError


class DataError(UserError, ValueError):
    """A structure file is malformed or unusable.

    The message names the file, the line when it is known, and what was expected.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
