"""Keys set to something that has no effect under the rest of the configuration (a sweep over them would
give identical runs): each is named, with why, so the command line can warn about it.

Which keys an option of a group reads is its dataclass (:data:`~aenet_exp.config.schema.OPTION_SCHEMAS`: a key of
another option is unknown under it). What is left here is one generic rule over values: while a condition holds,
the keys it names change nothing, so a key set away from its schema default is reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from aenet_exp.config.schema import OPTION_SCHEMAS
from aenet_exp.config.store import GROUP_SCHEMAS

FORCE_SUBSET_KEYS = ("sampling", "resample_each_epoch", "min_structures_per_epoch", "scale_unbiased", "epochs_per_window")
# augment.displacement (Å, RMS per component) above which a child's first-order label E − Σ δ·F is no longer its
# energy: the harmonic term ½ δ·H·δ, with force constants of a few eV/Å² per atom, grows past the training errors
# of a few meV/atom (Cooper et al. displace by hundredths of an Å).
TAYLOR_VALIDITY = 0.05


@dataclass(frozen=True)
class Idle:
    """While ``holds(cfg)``, the ``keys`` (dotted) have no effect, because ``why``."""

    holds: Callable[[DictConfig], bool]
    keys: tuple[str, ...]
    why: str


def force_keys(*names: str) -> tuple[str, ...]:
    return tuple(f"force.{name}" for name in names)


IDLE: tuple[Idle, ...] = (
    Idle(lambda c: c.force.weight == 0, (*force_keys("fraction", *FORCE_SUBSET_KEYS), "caching.features_for_force"),
         "forces are not trained (force.weight=0); train them with force=subsampled, or force.weight>0"),
    Idle(lambda c: c.force.weight != 0 and c.force.fraction == 1, force_keys(*FORCE_SUBSET_KEYS),
         "every force-labelled structure is supervised in every epoch (force.fraction=1)"),
    Idle(lambda c: c.force.weight != 0 and c.force.fraction != 1 and c.force.sampling == "fixed",
         force_keys("resample_each_epoch", "epochs_per_window"), "force.sampling=fixed draws the force structures once"),
    Idle(lambda c: c.scheduler.warmup_epochs == 0, ("scheduler.warmup_start_factor",),
         "there is no warm-up (scheduler.warmup_epochs=0)"),
    Idle(lambda c: c.early_stopping.patience is None, ("early_stopping.metric", "early_stopping.min_delta"),
         "early stopping is off (early_stopping.patience=null)"),
    Idle(lambda c: c.dataloader.num_workers == 0, ("dataloader.prefetch_factor", "dataloader.persistent_workers"),
         "graphs are built in the training process (dataloader.num_workers=0)"),
    Idle(lambda c: not c.data.database, ("data.in_memory_cache_size", "data.compression", "data.compression_level"),
         "there is no database (data.database=null)"),
    Idle(lambda c: c.committee.name == "deep" and not c.committee.calibrate, ("committee.calibration_percent",),
         "nothing is calibrated (committee.calibrate=false)"),
    Idle(lambda c: c.normalization.energy_target == "total", ("normalization.E_atomic",),
         "total energies are trained (normalization.energy_target=total)"),
    Idle(lambda c: c.normalization.E_atomic != "fit" or c.normalization.energy_target == "total",
         ("normalization.E_atomic_fixed",), "no reference energies are fitted (it holds some of them with "
         "normalization.E_atomic=fit and energy_target=cohesive)"),
)


def schema_default(cfg: DictConfig, key: str):
    """The schema's default of the dotted ``key`` under the option ``cfg`` chose for its group (what a value equal
    to it cannot have been set to mean); None for a key the option does not have."""
    group, name = key.split(".")
    node = OPTION_SCHEMAS[group][cfg[group].name] if group in OPTION_SCHEMAS else GROUP_SCHEMAS[group]
    found = [f for f in dataclasses.fields(node) if f.name == name]
    if not found:
        return None
    f = found[0]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def ineffective_keys(cfg: DictConfig) -> list[tuple[str, str]]:
    """``(key, why it has no effect)`` for every key set to something that changes nothing here."""
    return [(key, idle.why) for idle in IDLE if idle.holds(cfg) for key in idle.keys if changed(cfg, key)]


def changed(cfg: DictConfig, key: str) -> bool:
    """Whether ``cfg`` sets ``key`` (one its group's option has) to something other than the schema's default."""
    group, name = key.split(".")
    return name in cfg[group] and cfg[group][name] != schema_default(cfg, key)


def doubtful_values(cfg: DictConfig) -> list[tuple[str, str]]:
    """``(key, why its value is doubtful)`` for keys that take effect, but outside what their method is valid for."""
    found = []
    if cfg.augment.name == "taylor" and cfg.augment.displacement > TAYLOR_VALIDITY:
        found.append(("augment.displacement", f"is {cfg.augment.displacement} Å, beyond {TAYLOR_VALIDITY} Å, where the "
                      "children's first-order labels E − Σ δ·F stop being their energies; displace by hundredths of an Å"))
    return found
