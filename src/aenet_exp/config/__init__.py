"""The structured config: schema dataclasses, their ConfigStore registration, and validation."""

from __future__ import annotations

from importlib.resources import files

from omegaconf import OmegaConf

from aenet_exp.config.store import register_configs


def sample_data_path(name: str) -> str:
    """Absolute path of a data file shipped in ``aenet_exp/data/sample`` (resolver ``aenet_exp_sample``)."""
    return str(files("aenet_exp.data") / "sample" / name)


def setup() -> None:
    """Register the schema and the ``${aenet_exp_sample:...}`` resolver (idempotent)."""
    register_configs()
    OmegaConf.register_new_resolver("aenet_exp_sample", sample_data_path, replace=True)


setup()
