"""Retries of MLflow calls that meet a locked SQLite store (tracking/retry.py)."""

from __future__ import annotations

import pytest

from aenet_exp.tracking import retry_locked


def test_retry_locked_retries_only_locked_errors() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert retry_locked(flaky, base_delay_s=0) == "ok"
    assert len(calls) == 3
    with pytest.raises(KeyError):
        retry_locked(lambda: {}["missing"], base_delay_s=0)
