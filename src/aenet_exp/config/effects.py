"""Keys set to something that has no effect under the rest of the configuration (a sweep over them would
give identical runs): each is named, with why, so the command line can warn about it."""

from __future__ import annotations

import dataclasses

from omegaconf import DictConfig

from aenet_exp.config.schema import SchedulerConfig
from aenet_exp.config.store import GROUP_SCHEMAS

FORCE_SAMPLING_KEYS = ("fraction", "sampling", "resample_each_epoch", "min_structures_per_epoch", "scale_unbiased",
                       "epochs_per_window")
AUGMENT_KEYS = ("children", "displacement", "seed")
COMMITTEE_KEYS = ("members", "seeds", "bootstrap", "calibrate", "calibration_percent")
# augment.displacement (Å, RMS per component) above which a child's first-order label E − Σ δ·F is no longer its
# energy: the harmonic term ½ δ·H·δ, with force constants of a few eV/Å² per atom, grows past the training errors
# of a few meV/atom (Cooper et al. displace by hundredths of an Å).
TAYLOR_VALIDITY = 0.05
SCHEDULE_KEYS = {  # scheduler keys each schedule reads, besides the warm-up
    "none": set(),
    "cosine": {"min_lr"},
    "plateau": {"min_lr", "factor", "patience", "threshold", "metric"},
}


def schema_default(group: str, key: str):
    """The schema's default of ``group.key`` (what a value equal to it cannot have been set to mean)."""
    field = next(f for f in dataclasses.fields(GROUP_SCHEMAS[group]) if f.name == key)
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def changed(cfg: DictConfig, group: str, keys) -> list[str]:
    """The keys of ``group`` whose value differs from the schema's default."""
    return [key for key in keys if cfg[group][key] != schema_default(group, key)]


def ineffective_keys(cfg: DictConfig) -> list[tuple[str, str]]:
    """``(key, why it has no effect)`` for every key set to something that changes nothing here."""
    found: list[tuple[str, str]] = []
    force = cfg.force
    if force.weight == 0:
        why = "forces are not trained (force.weight=0); train them with force=subsampled, or force.weight>0"
        found += [(f"force.{key}", why) for key in changed(cfg, "force", FORCE_SAMPLING_KEYS)]
        if cfg.caching.features_for_force:
            found.append(("caching.features_for_force", "no forces are trained; energy-only features are kept by caching.features"))
    elif force.fraction == 1:
        why = "every force-labelled structure is supervised in every epoch (force.fraction=1)"
        keys = ("sampling", "resample_each_epoch", "min_structures_per_epoch", "scale_unbiased", "epochs_per_window")
        found += [(f"force.{key}", why) for key in changed(cfg, "force", keys)]
    elif force.sampling == "fixed":
        why = "force.sampling=fixed draws the force structures once"
        found += [(f"force.{key}", why) for key in changed(cfg, "force", ("resample_each_epoch", "epochs_per_window"))]
    schedule = cfg.scheduler.name
    unread = {f.name for f in dataclasses.fields(SchedulerConfig)} - SCHEDULE_KEYS.get(schedule, set())
    unread -= {"name", "warmup_epochs", "warmup_start_factor"}
    found += [(f"scheduler.{key}", f"scheduler={schedule} does not read it") for key in changed(cfg, "scheduler", sorted(unread))]
    if cfg.scheduler.warmup_epochs == 0:
        found += [(f"scheduler.{key}", "there is no warm-up (scheduler.warmup_epochs=0)")
                  for key in changed(cfg, "scheduler", ["warmup_start_factor"])]
    if cfg.early_stopping.patience is None:
        found += [(f"early_stopping.{key}", "early stopping is off (early_stopping.patience=null)")
                  for key in changed(cfg, "early_stopping", ["metric", "min_delta"])]
    if cfg.dataloader.num_workers == 0:
        found += [(f"dataloader.{key}", "graphs are built in the training process (dataloader.num_workers=0)")
                  for key in changed(cfg, "dataloader", ["prefetch_factor", "persistent_workers"])]
    if not cfg.data.database:
        found += [(f"data.{key}", "there is no database (data.database=null)")
                  for key in changed(cfg, "data", ["in_memory_cache_size", "compression", "compression_level"])]
    if cfg.augment.name == "none":
        found += [(f"augment.{key}", "no children are made (augment=none); make them with augment=taylor")
                  for key in changed(cfg, "augment", AUGMENT_KEYS)]
    if cfg.committee.name == "none":
        found += [(f"committee.{key}", "there is no committee (committee=none); train one with committee=deep")
                  for key in changed(cfg, "committee", COMMITTEE_KEYS)]
    elif not cfg.committee.calibrate:
        found += [(f"committee.{key}", "nothing is calibrated (committee.calibrate=false)")
                  for key in changed(cfg, "committee", ["calibration_percent"])]
    norm = cfg.normalization
    if norm.energy_target == "total" and norm.E_atomic is not None:
        found.append(("normalization.E_atomic", "total energies are trained (normalization.energy_target=total)"))
    if norm.E_atomic_fixed is not None and (norm.E_atomic != "fit" or norm.energy_target == "total"):
        found.append(("normalization.E_atomic_fixed", "no reference energies are fitted (it holds some of them with "
                      "normalization.E_atomic=fit and energy_target=cohesive)"))
    return found


def doubtful_values(cfg: DictConfig) -> list[tuple[str, str]]:
    """``(key, why its value is doubtful)`` for keys that take effect, but outside what their method is valid for."""
    found = []
    if cfg.augment.name == "taylor" and cfg.augment.displacement > TAYLOR_VALIDITY:
        found.append(("augment.displacement", f"is {cfg.augment.displacement} Å, beyond {TAYLOR_VALIDITY} Å, where the "
                      "children's first-order labels E − Σ δ·F stop being their energies; displace by hundredths of an Å"))
    return found


# learn's keys that only one option reads: key -> the options that read it
LEARN_OPTION_KEYS = {
    "explore.friction": ("md",), "explore.pressure": ("npt",),
    "oracle.calculator": ("ase",), "oracle.kwargs": ("ase", "xtb"), "oracle.command": ("command",),
}


def ineffective_learn_keys(cfg: DictConfig) -> list[tuple[str, str]]:
    """``(key, why)`` for learn's keys set under an option that does not read them."""
    found = []
    for key, options in LEARN_OPTION_KEYS.items():
        group, name = key.split(".")
        chosen = cfg[group].name
        if chosen not in options and cfg[group][name] != schema_default(group, name):
            found.append((key, f"{group}={chosen} does not read it (only {', '.join(f'{group}={o}' for o in options)})"))
    return found
