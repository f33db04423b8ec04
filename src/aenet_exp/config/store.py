"""Registers the schema in Hydra's ConfigStore: ``conf/<group>/<option>.yaml`` extends ``base_<group>``."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from aenet_exp.config import schema

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
}
OPTIMIZER_SCHEMAS = {"adam": schema.AdamConfig, "adamw": schema.AdamWConfig, "sgd": schema.SGDConfig}


def register_configs() -> None:
    """Store ``base_train`` and one ``base_<group>`` (``base_<name>`` for optimizers) per group."""
    store = ConfigStore.instance()
    store.store(name="base_train", node=schema.TrainConfig)
    for group, node in GROUP_SCHEMAS.items():
        store.store(group=group, name=f"base_{group}", node=node)
    for name, node in OPTIMIZER_SCHEMAS.items():
        store.store(group="optimizer", name=f"base_{name}", node=node)
