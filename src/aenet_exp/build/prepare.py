"""``train``: from the composed config to the one training will run: data options that no longer describe the data,
validation, a resume's allowed changes, and warnings about keys that change nothing."""

from __future__ import annotations

from omegaconf import DictConfig

from aenet_exp.config.effects import ineffective_keys, ineffective_learn_keys
from aenet_exp.config.validation import check_data_sources, check_resume_overrides, validate, validate_learn
from aenet_exp.errors import warn

# What a data option says about its own data: not about other data named by data.path.
DESCRIBED_BY_THE_DATA_OPTION = ("name", "E_atomic")


def overridden(overrides: list[str]) -> set[str]:
    """The keys that command-line ``overrides`` set (``+key=``, ``~key`` included)."""
    return {override.split("=", 1)[0].lstrip("+~") for override in overrides}


def describe_own_data(cfg: DictConfig, overrides: list[str]) -> None:
    """``data.path=...`` names other data than the data option's: the option's name and reference energies
    (``data.name``, ``data.E_atomic``) are dropped, unless the command line gives them too."""
    keys = overridden(overrides)
    if "data.path" not in keys:
        return
    for key in DESCRIBED_BY_THE_DATA_OPTION:
        if f"data.{key}" not in keys:
            cfg.data[key] = None


def prepare(cfg: DictConfig, overrides: list[str], warnings: bool = True) -> None:
    """Make ``cfg`` the config that runs (in place) and check it; UserError naming the key otherwise."""
    describe_own_data(cfg, overrides)
    validate(cfg)
    check_data_sources(cfg)
    if cfg.resume:
        check_resume_overrides(overrides)
    if warnings:
        for key, why in ineffective_keys(cfg):
            warn(f"{key} has no effect: {why}")


def prepare_learn(cfg: DictConfig, overrides: list[str]) -> None:
    """``learn``'s :func:`prepare`: the training groups as ``train`` checks them, the loop's own rules, warnings about
    keys that change nothing (a resumed campaign's config was checked when it started: ``overrides`` empty)."""
    describe_own_data(cfg, overrides)
    validate_learn(cfg)
    check_data_sources(cfg)
    for key, why in [*ineffective_keys(cfg), *ineffective_learn_keys(cfg)]:
        warn(f"{key} has no effect: {why}")
