"""Fuzzed configuration: every key refuses a value of the wrong type, naming the key."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from helpers import FAST, compose_train, run_cli

pytestmark = pytest.mark.slow


def typed_leaves():
    """(dotted key, wrong value) for every typed leaf of the default config."""
    cfg = compose_train("optimizer=adam")
    cases = []

    def walk(node, prefix):
        for key in node:
            path = f"{prefix}{key}"
            child = node._get_node(key)
            if OmegaConf.is_dict(child):
                walk(child, path + ".")
                continue
            ref = child._metadata.ref_type
            if ref in (int, float):
                cases.append((path, "not-a-number"))
            elif ref is bool:
                cases.append((path, "perhaps"))
            elif OmegaConf.is_list(child) or getattr(ref, "__origin__", None) is list:
                cases.append((path, "{a: 1}"))

    walk(cfg, "")
    return cases


CASES = typed_leaves()


def test_every_typed_key_is_fuzzed():
    keys = {k for k, _ in CASES}
    assert {"iterations", "force.weight", "optimizer.mu", "caching.features", "model.hidden",
            "dataloader.num_workers", "descriptor.rad_cutoff", "tracking.timing"} <= keys
    assert len(keys) >= 40


@pytest.mark.parametrize("key, value", CASES, ids=[k for k, _ in CASES])
def test_wrong_type_is_refused_naming_the_key(key, value):
    with pytest.raises(ConfigCompositionException) as caught:
        compose_train(f"{key}={value}")
    text = str(caught.value) + str(caught.value.__cause__)
    assert key in text


@pytest.mark.parametrize("override", ["force.fraction=lots", "caching.neighbors=perhaps", "model.hidden={a: 1}"])
def test_wrong_type_through_the_cli(tmp_path, override):
    result = run_cli("train", *FAST, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", override, cwd=tmp_path)
    assert result.returncode != 0
    assert override.split("=")[0] in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()

