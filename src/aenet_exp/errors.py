"""The errors a user must act on: the command line prints their first line and exits with status 2.

Every such error derives from :class:`UserError`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import warnings


class UserError(Exception):
    """Bad input (a config value, a data file, a checkpoint, a store): one line, exit 2, no traceback."""


class ConfigError(UserError, ValueError):
    """A config value a user must change; ``key`` is its dotted Hydra key."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")

    def within(self, group: str) -> "ConfigError":
        """The same error with ``key`` named inside the config ``group`` (``rad_order`` -> ``descriptor.rad_order``)."""
        return ConfigError(f"{group}.{self.key}", self.message)


class SettingError(ConfigError):
    """A constructor argument out of range, phrased for a library call (``rad_order must be >= 1, got 0``).

    Config validation runs the same checks as the constructors and reports them by Hydra key
    (:meth:`ConfigError.within`: ``descriptor.rad_order: must be >= 1, got 0``).
    """

    def __init__(self, name: str, predicate: str):
        super().__init__(name, predicate)
        self.args = (f"{name} {predicate}",)

    def __str__(self) -> str:
        return self.args[0]


class UnreadableFile(UserError):
    """A file aenet_exp should have written (a model, a checkpoint) that cannot be read as one."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def root_cause(error: BaseException) -> BaseException:
    """The innermost error behind ``error``: a database driver's (SQLAlchemy's ``orig``), or the chain's end."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "orig", None) or error.__cause__ or error.__context__
        if not isinstance(inner, BaseException):
            break
        error = inner
    return error


class AenetWarning(UserWarning):
    """A setting or data that is probably not what the user meant; training goes on."""


def warn(message: str) -> None:
    """Tell the user ``message`` (one line; the command line prints it as ``aenet_exp: warning: ...``)."""
    warnings.warn(message, AenetWarning, stacklevel=2)
