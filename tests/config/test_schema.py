"""The schema and the config tree (config/schema.py, conf/): every group option composes; defaults; types."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from aenet_exp.config.schema import AdamConfig, AdamWConfig, LearnConfig, SGDConfig, TrainConfig
from aenet_exp.config.validation import validate
from aenet_exp.data.readers import SHARED_PREFIX

from helpers import FAST, ROOT, compose_command, compose_train, run_cli

GROUP_OPTIONS = sorted(
    (path.parent.name, path.stem)
    for path in (ROOT / "src" / "aenet_exp" / "conf").glob("*/*.yaml")
    if path.parent.name not in ("experiment", "hparams_search")  # tested in test_schedule.py / test_sweeps.py
)


def test_every_group_has_options():
    groups = {g for g, _ in GROUP_OPTIONS}
    assert groups == {
        "augment", "caching", "checkpoint", "committee", "data", "dataloader", "descriptor", "early_stopping", "ema",
        "force", "model", "normalization", "optimizer", "precision", "sampling", "scheduler", "tracking",
        "explore", "select", "oracle", "campaign",  # learn's own
    }


LEARN_GROUPS = ("explore", "select", "oracle", "campaign")


@pytest.mark.parametrize("group, option", [(g, o) for g, o in GROUP_OPTIONS if g not in LEARN_GROUPS])
def test_every_group_option_composes_and_validates(group, option):
    cfg = compose_train(f"{group}={option}")
    assert OmegaConf.get_type(cfg) is TrainConfig
    if group == "data" and option in ("tio2", "ethanol"):
        assert cfg.data.path.startswith(SHARED_PREFIX)  # composed only: nothing is read
    validate(cfg)


@pytest.mark.parametrize("group, option", [(g, o) for g, o in GROUP_OPTIONS if g in LEARN_GROUPS])
def test_every_learn_group_option_composes(group, option):
    cfg = compose_command("learn", f"{group}={option}")
    assert OmegaConf.get_type(cfg) is LearnConfig
    assert cfg[group].get("name", option) == option  # the option's own base (explore, oracle) or the group's


def test_defaults():
    cfg = compose_train()
    assert cfg.optimizer.name == "adam" and cfg.force.weight == 0.0 and cfg.precision.dtype == "auto"
    assert cfg.data.name == "tio2-sample" and cfg.data.path.endswith("tio2-sample.tar.gz")
    assert cfg.data.E_atomic == {"O": -432.503149303, "Ti": -1604.604515075}
    assert cfg.tracking.uri == "sqlite:///outputs/mlflow.db"


@pytest.mark.parametrize("option, schema", [("adam", AdamConfig), ("adamw", AdamWConfig), ("sgd", SGDConfig)])
def test_optimizer_options_are_typed_by_their_schema(option, schema):
    assert OmegaConf.get_type(compose_train(f"optimizer={option}").optimizer) is schema


@pytest.mark.parametrize(
    "override",
    ["optimizer.mus=0.1", "force.weigth=0.1", "force.weight=abc", "iterations=many", "optimizer.lr=0.1", "nonsense=1"],
)
def test_typos_and_wrong_types_fail_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose_train(override)


REFERENCE_KEYS = [
    "iterations", "seed", "optimizer.mu", "optimizer.batchsize", "optimizer.beta1", "optimizer.beta2",
    "optimizer.epsilon", "optimizer.weight_decay", "data.testpercent", "data.max_energy", "data.max_forces",
    "force.weight", "force.fraction", "force.sampling", "force.resample_each_epoch",
    "force.min_structures_per_epoch", "force.scale_unbiased", "force.epochs_per_window",
    "caching.features", "caching.features_for_force", "caching.neighbors", "caching.triplets",
    "caching.persist_dir", "caching.scope", "dataloader.num_workers", "dataloader.prefetch_factor",
    "dataloader.persistent_workers", "precision.device", "precision.dtype", "precision.memory_mode",
    "normalization.energy_target", "normalization.E_atomic", "normalization.feature_stats",
    "normalization.E_shift", "normalization.E_scaling", "normalization.features", "normalization.energy",
    "tracking.save_energies", "tracking.save_forces", "tracking.timing", "tracking.show_progress",
    "tracking.show_batch_progress", "tracking.uri", "tracking.experiment", "tracking.run_name",
    "tracking.enabled", "descriptor.rad_order", "descriptor.rad_cutoff", "descriptor.ang_order",
    "descriptor.ang_cutoff", "descriptor.species", "model.hidden", "model.activations",
]


@pytest.mark.slow
def test_cfg_job_shows_every_key(tmp_path):
    result = run_cli("train", "--cfg", "job", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    shown = OmegaConf.create(result.stdout)
    for key in REFERENCE_KEYS:
        assert OmegaConf.select(shown, key, default="<absent>") != "<absent>", key
    sgd = OmegaConf.create(run_cli("train", "--cfg", "job", "optimizer=sgd", cwd=tmp_path).stdout)
    assert sgd.optimizer.lr == 0.01 and sgd.optimizer.momentum == 0.9


def test_fast_overrides_compose():
    validate(compose_train(*FAST))

