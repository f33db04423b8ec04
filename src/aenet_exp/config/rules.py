"""Range rules of config values: a predicate and the words for what it expects, attached to schema fields."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple


class Rule(NamedTuple):
    """A value is accepted when ``holds(value)``; otherwise the error says it expected ``expected``."""

    holds: Callable[[Any], bool]
    expected: str


def positive(x) -> bool:
    return x is not None and x > 0


def non_negative(x) -> bool:
    return x is not None and x >= 0


def optional(rule: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """``rule``, or null."""
    return lambda x: x is None or rule(x)


def within(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Callable[[Any], bool]:
    """``low <= x <= high``, either end open when asked."""

    def holds(x) -> bool:
        above = x > low if low_open else x >= low
        below = x < high if high_open else x <= high
        return x is not None and above and below

    return holds


def one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda x: x in choices


def non_blank(x) -> bool:
    return bool(str(x).strip())


def finite(x) -> bool:
    """Not NaN and not ±inf (null passes: optional keys say so themselves)."""
    return x is None or not isinstance(x, float) or math.isfinite(x)


def below(limit: int) -> Callable[[Any], bool]:
    return lambda x: x is not None and x < limit


def path_or_paths(x) -> bool:
    """A non-empty path, or a non-empty list of them (files, directories, globs, archives)."""
    if isinstance(x, str):
        return bool(x.strip())
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(p, str) and p.strip() for p in x)


def references(x) -> bool:
    """Reference energies: null, a file of isolated atoms, or {symbol: finite eV}."""
    if x is None or (isinstance(x, str) and x.strip()):
        return True
    return (
        isinstance(x, Mapping) and len(x) > 0 and all(isinstance(k, str) for k in x)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in x.values())
    )
