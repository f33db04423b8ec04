"""Retrying store operations that hit a busy SQLite database, or lost a race with another job."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

LOCKED_MESSAGE = "database is locked"
# MLflow looks a dataset up by (experiment, name, digest) and inserts it when absent; two jobs of one
# sweep logging the same data at once can both miss it, and the second insert fails. Retried, the
# lookup finds the first job's row and reuses it.
DATASET_RACE_MESSAGE = "UNIQUE constraint failed: datasets."


def retry_locked(operation: Callable[[], T], attempts: int = 5, base_delay_s: float = 0.2,
                 also_transient: tuple[str, ...] = ()) -> T:
    """Call `operation`, retrying with exponential backoff while SQLite reports it is locked (or an
    error containing one of `also_transient`).

    Any other error, or the error of the last attempt, propagates unchanged.
    """
    transient = (LOCKED_MESSAGE, *also_transient)
    for attempt in range(attempts - 1):
        try:
            return operation()
        except Exception as exc:
            if not any(message in str(exc) for message in transient):
                raise
        time.sleep(base_delay_s * 2**attempt)
    return operation()
