"""Refactoring changes no number: eight configurations reproduce, bit for bit, every per-epoch and final metric
the code computed before the composition module and the step strategies (tests/helpers/behaviour_cases.py)."""

from __future__ import annotations

import json

import pytest

from helpers.behaviour_cases import CASES, REFERENCE, case_metrics, ddp_metrics


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("name", list(CASES))
def test_every_metric_is_bitwise_what_it_was(tmp_path, reference, name):
    found = case_metrics(tmp_path, name)
    expected = reference[name]
    assert len(found["epochs"]) == len(expected["epochs"])
    for epoch, (got, wanted) in enumerate(zip(found["epochs"], expected["epochs"])):
        assert got == wanted, (name, epoch, {k: (got.get(k), v) for k, v in wanted.items() if got.get(k) != v})
    assert found["final"] == expected["final"], {k: (found["final"].get(k), v) for k, v in expected["final"].items()
                                                 if found["final"].get(k) != v}


@pytest.mark.slow
def test_two_processes_reproduce_every_metric_bitwise(tmp_path, reference):
    found = ddp_metrics(tmp_path)
    assert found == reference["ddp"], {k: (found.get(k), v) for k, v in reference["ddp"].items() if found.get(k) != v}
