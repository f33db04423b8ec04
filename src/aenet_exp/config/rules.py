"""Range rules of config values: a predicate and the words for what it expects, attached to schema fields."""

from __future__ import annotations

from collections.abc import Callable
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
