"""Registers the schema in Hydra's ConfigStore: ``conf/<group>/<option>.yaml`` extends ``base_<group>``, or
``base_<option>`` for the groups with one dataclass per option (:data:`~aenet_exp.config.schema.OPTION_SCHEMAS`,
and the sampling group, whose options differ by name only), and ``conf/<command>.yaml`` extends ``base_<command>``
(see :mod:`aenet_exp.config.commands`). An option's ``name`` is set by its base: the YAML never repeats it.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from aenet_exp.config import schema
from aenet_exp.config.commands import COMMANDS

# The groups with one dataclass for all their options.
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
    "sampling": schema.SamplingConfig,
    "checkpoint": schema.CheckpointConfig,
    "early_stopping": schema.EarlyStoppingConfig,
    "ema": schema.EmaConfig,
    "select": schema.TrustWindowConfig,
    "campaign": schema.CampaignConfig,
}
# Every group in the reference's order: the optimizer first, then the shared groups, learn's last.
GROUPS = ("optimizer", "data", "descriptor", "model", "force", "caching", "dataloader", "precision", "normalization",
          "tracking", "scheduler", "sampling", "augment", "committee", "checkpoint", "early_stopping", "ema", "explore",
          "select", "oracle", "campaign")


def option_schemas(group: str) -> dict[str, type]:
    """``{option: its dataclass}`` of a group with one per option, else ``{"": the group's dataclass}``."""
    return schema.OPTION_SCHEMAS.get(group, {"": GROUP_SCHEMAS.get(group)})


def option_bases() -> dict[str, dict[str, object]]:
    """``group -> option -> node`` of the groups whose options each extend a base named by the option."""
    bases = {group: {option: node(name=option) for option, node in options.items()}
             for group, options in schema.OPTION_SCHEMAS.items()}
    bases["sampling"] = {option: schema.SamplingConfig(name=option) for option in schema.SAMPLING_POLICIES}
    return bases


def register_configs() -> None:
    """Store ``base_<command>`` per command, ``base_<group>`` per group with one dataclass and ``base_<option>``
    per option of the others."""
    store = ConfigStore.instance()
    for command in COMMANDS.values():
        store.store(name=f"base_{command.config_name}", node=command.schema)
    bases = option_bases()
    for group, node in GROUP_SCHEMAS.items():
        if group not in bases:
            store.store(group=group, name=f"base_{group}", node=node)
    for group, options in bases.items():
        for option, node in options.items():
            store.store(group=group, name=f"base_{option}", node=node)
