"""Retrying store operations that hit a busy SQLite database."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

LOCKED_MESSAGE = "database is locked"


def retry_locked(operation: Callable[[], T], attempts: int = 5, base_delay_s: float = 0.2) -> T:
    """Call `operation`, retrying with exponential backoff while SQLite reports it is locked.

    Any other error, or the error of the last attempt, propagates unchanged.
    """
    for attempt in range(attempts - 1):
        try:
            return operation()
        except Exception as exc:
            if LOCKED_MESSAGE not in str(exc):
                raise
        time.sleep(base_delay_s * 2**attempt)
    return operation()
