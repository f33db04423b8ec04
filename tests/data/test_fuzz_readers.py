"""Fuzzed structure files: every mutation of a valid file reads correctly or raises a DataError naming it."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aenet_exp.data import DataError, Structure, read_structures

from helpers import DATA

pytestmark = pytest.mark.slow


XSF_SEED = (DATA / "tio2" / "structure1067.xsf").read_text()


MOLECULE_SEED = "# total energy = -14.5 eV\nATOMS\nO 0.0 0.0 0.119 0.0 0.0 -0.5\nH 0.0 0.763 -0.477 0.0 0.1 0.25\nH 0.0 -0.763 -0.477 0.0 -0.1 0.25\n"


XYZ_SEED = "".join((DATA / "ethanol" / "ethanol5.xyz").read_text().splitlines(keepends=True)[:22])


JUNK_TOKENS = ["nan", "NaN", "inf", "-inf", "1e999", "abc", "Xx", "0", "-1", "", "1.2.3", "''", "\"", "=", "9999999999"]


FUZZ = settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw, seed: str) -> bytes:
    """``seed`` after one to three mutations: truncation, deleted/duplicated lines, junk tokens, binary junk."""
    lines = seed.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "delete", "duplicate", "token", "binary", "empty", "swap"]))
        if not lines:
            break
        k = draw(st.integers(0, len(lines) - 1))
        if kind == "truncate":
            text = "".join(lines)
            lines = [text[: draw(st.integers(0, len(text)))]]
        elif kind == "delete":
            del lines[k]
        elif kind == "duplicate":
            lines.insert(k, lines[k])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[j] = lines[j], lines[k]
        elif kind == "token":
            tokens = lines[k].split()
            if tokens:
                tokens[draw(st.integers(0, len(tokens) - 1))] = draw(st.sampled_from(JUNK_TOKENS))
            lines[k] = " ".join(tokens) + "\n"
        elif kind == "empty":
            lines = []
        else:
            lines.insert(k, draw(st.binary(min_size=1, max_size=40)).decode("latin-1"))
    return "".join(lines).encode("latin-1", errors="replace")


def outcome(tmp_path_factory, name: str, content: bytes):
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(content)
    try:
        structures = read_structures(path)
    except DataError as error:
        assert str(error).startswith(str(path)), error
        return "error"
    assert structures and all(isinstance(s, Structure) for s in structures)
    return "ok"


@FUZZ
@given(content=mutated(XSF_SEED))
def test_fuzzed_periodic_xsf(tmp_path_factory, content):
    event(outcome(tmp_path_factory, "s.xsf", content))


@FUZZ
@given(content=mutated(MOLECULE_SEED))
def test_fuzzed_molecular_xsf(tmp_path_factory, content):
    event(outcome(tmp_path_factory, "m.xsf", content))


@FUZZ
@given(content=mutated(XYZ_SEED))
def test_fuzzed_extended_xyz(tmp_path_factory, content):
    event(outcome(tmp_path_factory, "e.xyz", content))

