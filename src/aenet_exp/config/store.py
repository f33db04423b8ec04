"""Registers the schema in Hydra's ConfigStore: ``conf/<group>/<option>.yaml`` extends ``base_<group>``, and
``conf/<command>.yaml`` extends ``base_<command>`` (see :mod:`aenet_exp.config.commands`).

The optimizer, scheduler, sampling, augment and committee groups have one base per option (``base_adam``, ``base_cosine``, ...),
which is where an option's ``name`` is set: the YAML never repeats it.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from aenet_exp.config import schema
from aenet_exp.config.commands import COMMANDS

GROUP_SCHEMAS = {
    "data": schema.DataConfig,
    "descriptor": schema.DescriptorConfig,
    "model": schema.ModelConfig,
    "force": schema.ForceConfig,
    "caching": schema.CachingConfig,
    "dataloader": schema.DataLoaderConfig,
    "precision": schema.PrecisionConfig,
    "normalization": schema.NormalizationConfig,
    "tracking": schema.TrackingConfig,
    "scheduler": schema.SchedulerConfig,
    "sampling": schema.SamplingConfig,
    "augment": schema.AugmentConfig,
    "committee": schema.CommitteeConfig,
    "checkpoint": schema.CheckpointConfig,
    "early_stopping": schema.EarlyStoppingConfig,
    "ema": schema.EmaConfig,
    "explore": schema.ExploreConfig,
    "select": schema.TrustWindowConfig,
    "oracle": schema.OracleConfig,
    "campaign": schema.CampaignConfig,
}
# Groups whose options each extend a base of their own, named by the option.
PER_OPTION_GROUPS = ("optimizer", "scheduler", "sampling", "augment", "committee", "explore", "oracle")


def register_configs() -> None:
    """Store ``base_<command>`` per command, one ``base_<group>`` per group and ``base_<option>`` for the groups
    with one base per option."""
    store = ConfigStore.instance()
    for command in COMMANDS.values():
        store.store(name=f"base_{command.config_name}", node=command.schema)
    for group, node in GROUP_SCHEMAS.items():
        if group not in PER_OPTION_GROUPS:
            store.store(group=group, name=f"base_{group}", node=node)
    for name, node in schema.OPTIMIZER_SCHEMAS.items():
        store.store(group="optimizer", name=f"base_{name}", node=node)
    for name in schema.SCHEDULERS:
        store.store(group="scheduler", name=f"base_{name}", node=schema.SchedulerConfig(name=name))
    for name in schema.SAMPLING_POLICIES:
        store.store(group="sampling", name=f"base_{name}", node=schema.SamplingConfig(name=name))
    for name in schema.AUGMENT_METHODS:
        store.store(group="augment", name=f"base_{name}", node=schema.AugmentConfig(name=name))
    for name in schema.COMMITTEES:
        store.store(group="committee", name=f"base_{name}", node=schema.CommitteeConfig(name=name))
    for name in schema.EXPLORATIONS:
        store.store(group="explore", name=f"base_{name}", node=schema.ExploreConfig(name=name))
    for name in schema.ORACLES:
        store.store(group="oracle", name=f"base_{name}", node=schema.OracleConfig(name=name))
