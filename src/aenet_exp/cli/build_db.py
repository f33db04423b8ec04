"""``python -m aenet_exp build-db data.path=... data.database=... [augment=taylor]``: the HDF5 structure database
(with ``augment=taylor``, each structure with forces followed by its Taylor children, as training makes them)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from aenet_exp.cli.common import fail
from aenet_exp.config.validation import ConfigError, validate
from aenet_exp.errors import UserError


@hydra.main(config_path="pkg://aenet_exp.conf", config_name="train", version_base="1.3")
def build_db(cfg: DictConfig) -> None:
    """Hydra task: build the HDF5 structure database ``data.database`` from ``data.path``."""
    from aenet_exp.data.hdf5 import build_database
    from aenet_exp.training.run import taylor_expansion

    try:
        validate(cfg)
        if not cfg.data.database:
            raise ConfigError("data.database", "expected the path of the HDF5 database to build, e.g. data.database=train.h5")
        source = OmegaConf.to_container(cfg.data.path) if OmegaConf.is_config(cfg.data.path) else cfg.data.path
        d = cfg.data
        count = build_database(source, d.database, d.compression, d.compression_level, cfg.tracking.show_progress,
                               taylor_expansion(cfg))
    except UserError as error:
        fail(str(error))
    print(f"wrote {count} structures to {cfg.data.database}")
