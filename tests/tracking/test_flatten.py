"""Nested configurations flattened into MLflow parameters."""

from __future__ import annotations

from omegaconf import OmegaConf

from aenet_exp.tracking import (
    flatten_params,
)


def test_flatten_nested_mapping_lists_and_none() -> None:
    nested = {"force": {"fraction": 0.1}, "layers": [10, 10], "seed": None, "empty": {}}
    assert flatten_params(nested) == {
        "force.fraction": "0.1",
        "layers": "[10, 10]",
        "seed": "None",
        "empty": "{}",
    }


def test_flatten_a_resolved_config() -> None:
    cfg = OmegaConf.create({"optimizer": {"mu": 0.01, "mu_copy": "${optimizer.mu}"}, "n": [1]})
    assert flatten_params(OmegaConf.to_container(cfg, resolve=True), prefix="cfg") == {
        "cfg.optimizer.mu": "0.01",
        "cfg.optimizer.mu_copy": "0.01",
        "cfg.n": "[1]",
    }

