"""The ``key=value`` arguments of the commands that are not Hydra apps (``export``, ``select``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aenet_exp.errors import UserError


class ArgumentError(UserError, ValueError):
    """A bad argument or an unusable input of such a command, told to the user in one line."""


def usage(command: str, keys: Mapping[str, str]) -> str:
    """The command line ``command`` and one line per key with its meaning."""
    return f"usage: python -m aenet_exp {command}\n\n" + "\n".join(f"  {key:<12}{meaning}" for key, meaning in keys.items())


def parse_key_values(args: Sequence[str], keys: Mapping[str, str], required: Mapping[str, str]) -> dict[str, str]:
    """``key=value`` arguments -> ``{key: value}``, keys from ``keys``; each of ``required`` (key -> an example
    value) must be given and not empty."""
    options: dict[str, str] = {}
    for arg in args:
        key, equals, value = arg.partition("=")
        if not equals or key not in keys:
            raise ArgumentError(f"unexpected argument {arg!r}; expected key=value with keys {list(keys)}")
        options[key] = value
    for key, example in required.items():
        if not options.get(key):
            raise ArgumentError(f"{key}: expected {keys[key]}, e.g. {key}={example}")
    return options


def positive_int(options: Mapping[str, str], key: str, default: int) -> int:
    """``options[key]`` as a positive integer (``default`` when absent)."""
    text = options.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ArgumentError(f"{key}: expected a positive integer, got {text!r}")
    return value
