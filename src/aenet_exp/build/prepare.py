"""``train``: from the composed config to the one training will run: data options that no longer describe the data,
validation, a resume's allowed changes, and warnings about keys that change nothing."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from aenet_exp.cli.common import fail
from aenet_exp.config.effects import doubtful_values, ineffective_keys
from aenet_exp.config.schema import OPTION_SCHEMAS
from aenet_exp.config.validation import (
    check_boolean_overrides, check_data_sources, check_resume_overrides, override_keys, validate, validate_learn,
)
from aenet_exp.errors import ConfigError, UserError, warn
from aenet_exp.rundir import CONFIG_FILE

# What a data option says about its own data: not about other data named by data.path.
DESCRIBED_BY_THE_DATA_OPTION = ("name", "E_atomic")


def implied_overrides(overrides: Sequence[str]) -> list[str]:
    """What command-line ``overrides`` imply beyond themselves, composed with them so that every view of the config
    (``--cfg job``, ``.hydra/config.yaml``, the run's ``config.yaml``) is the config that runs: ``data.path`` names
    other data than the data option's, whose name and reference energies (``data.name``, ``data.E_atomic``) are then
    dropped; ``data.test_path`` gives the test set, so no share of ``data.path`` is held out (``data.testpercent=0``).
    A key the command line sets itself keeps its value."""
    given = dict(override.lstrip("+~").partition("=")[::2] for override in overrides)
    implied = {}
    if "data.path" in given:
        implied.update({f"data.{key}": "null" for key in DESCRIBED_BY_THE_DATA_OPTION})
    if given.get("data.test_path", "null") != "null":
        implied["data.testpercent"] = "0"
    return [f"{key}={value}" for key, value in implied.items() if key not in given]


def prepare(cfg: DictConfig, overrides: list[str], warnings: bool = True) -> None:
    """Make ``cfg`` the config that runs (in place) and check it; UserError naming the key otherwise."""
    check_boolean_overrides(cfg, overrides)
    validate(cfg)
    check_data_sources(cfg)
    if cfg.resume:
        continue_run(cfg, overrides, warnings)
    if warnings:
        warn_about(cfg)


def warn_about(cfg: DictConfig) -> None:
    """Warn about the keys of ``cfg`` that have no effect and its doubtful values, one line each."""
    for key, why in ineffective_keys(cfg):
        warn(f"{key} has no effect: {why}")
    for key, why in doubtful_values(cfg):
        warn(f"{key} {why}")


def continue_run(cfg: DictConfig, overrides: list[str], warnings: bool) -> None:
    """A resume continues the run in ``cfg.resume`` as it was configured: ``overrides`` may repeat its values but
    change only ``RESUMABLE_KEYS``, ``iterations`` no fewer than the epochs done. A run trained untracked stays
    untracked (``cfg.tracking.enabled``; said when ``warnings`` and the command line does not say it): an MLflow run
    of its last epochs only would be a false record."""
    from aenet_exp.build.training import name_the_data  # start-up: torch, only to resume
    from aenet_exp.training.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(cfg.resume)
    stored = OmegaConf.create(checkpoint["config"])
    name_the_data(cfg)  # as the run did: its stored config has the name
    check_resume_overrides(overrides, cfg, stored)
    if cfg.iterations < checkpoint["epoch"]:
        raise ConfigError("iterations", f"is {cfg.iterations}, but the run in {cfg.resume} has trained "
                          f"{checkpoint['epoch']} epochs; give iterations={checkpoint['epoch']} or more to continue it")
    if stored.tracking.enabled:
        return
    typed = "tracking.enabled" in override_keys(overrides)
    if typed and cfg.tracking.enabled:
        raise ConfigError("tracking.enabled", f"is true, but the run in {cfg.resume} was trained untracked: an MLflow "
                          "run would hold only its resumed epochs; resume it untracked, or start a new run")
    cfg.tracking.enabled = False
    if warnings and not typed:
        warn(f"resume: the run in {cfg.resume} is not tracked in MLflow (trained with tracking.enabled=false), and "
             "neither are its resumed epochs")


def prepare_learn(cfg: DictConfig) -> None:
    """``learn``'s :func:`prepare`: the training groups as ``train`` checks them, the loop's own rules, warnings about
    keys that change nothing."""
    validate_learn(cfg)
    check_data_sources(cfg)
    warn_about(cfg)


# What a resumed campaign may change: how far it goes, and what it shows.
EXTENDABLE = ("resume", "campaign.generations", "campaign.labels_budget", "campaign.converged", "tracking.show_progress")


def resumed_campaign_config(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The config a campaign in ``cfg.resume`` started with; values the command line changes are refused, but how
    far the campaign goes (:data:`EXTENDABLE`)."""
    directory = Path(cfg.resume)
    stored_path = directory / CONFIG_FILE
    if not stored_path.is_file():
        raise ConfigError("resume", f"no {CONFIG_FILE} in {directory}; expected the directory of a campaign")
    written = OmegaConf.load(stored_path)
    stored = OmegaConf.merge(with_stored_options(cfg, written), written)
    for key in override_keys(overrides):
        if key in EXTENDABLE:
            OmegaConf.update(stored, key, OmegaConf.select(cfg, key), merge=False)
        elif not key.startswith("hydra.") and OmegaConf.select(stored, key) != OmegaConf.select(cfg, key):
            raise ConfigError("resume", f"continues the campaign as it was configured; {key} cannot change (a resumed "
                              f"campaign takes {', '.join(EXTENDABLE[1:])})")
    stored.resume = str(directory)
    return stored


def with_stored_options(cfg: DictConfig, stored: DictConfig) -> DictConfig:
    """``cfg`` with each group that has one dataclass per option switched to the option ``stored`` chose (a campaign
    that explored with npt resumes with npt's keys), and ``stored`` rid of keys that option does not read (a config
    written before each option had its own dataclass carries the others', which had no effect)."""
    cfg = cfg.copy()
    for group, options in OPTION_SCHEMAS.items():
        chosen = OmegaConf.select(stored, f"{group}.name")
        if group in cfg and chosen in options:
            schema = options[chosen]
            cfg[group] = OmegaConf.structured(schema)
            read = {f.name for f in dataclasses.fields(schema)}
            stored[group] = {key: value for key, value in stored[group].items() if key in read}
    return cfg


def campaign_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The config a ``learn`` command runs: its own, or the resumed campaign's; checked (UserError otherwise)."""
    check_boolean_overrides(cfg, overrides)
    if cfg.resume:
        cfg = resumed_campaign_config(cfg, overrides)
    prepare_learn(cfg)
    return cfg


class BeforeTheCampaign(Callback):
    """Hydra callback: check ``learn``'s config before Hydra makes the campaign folder, so a campaign refused for a
    bad value leaves nothing behind (warnings are said once, by the app)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                campaign_config(task, list(config.hydra.overrides.task))
        except UserError as error:
            fail(str(error).splitlines()[0])
