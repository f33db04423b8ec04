"""Range, choice and combination checks of a composed config; each failure names its key.

Range rules are schema metadata (:func:`aenet_exp.config.schema.param`), applied to every field of
the dataclass that types each node, so no key is checked by name here. The descriptor, the networks
and the database compression are checked by the same functions their constructors call.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.nodes import BooleanNode

from aenet_exp.config.explain import unknown_key
from aenet_exp.config.rules import finite
from aenet_exp.config.schema import EPOCH_METRICS, OPTION_SCHEMAS
from aenet_exp.errors import ConfigError
from aenet_exp.rundir import CHECKPOINT_FILE

__all__ = ["ConfigError", "EPOCH_METRICS", "OPTIMIZED_METRICS", "validate", "validate_build_db", "validate_ensemble"]

OPTIMIZED_METRICS = EPOCH_METRICS


def check_rules(node: DictConfig, prefix: str = "", root: type | None = None) -> None:
    """Apply the range rule of every field of ``node``'s schema, then of its typed child nodes; a key with a rule
    and no value (``???``) is one the command needs. ``root``: the command's schema (``node``'s at the top)."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return
    root = root or schema
    known = {f.name for f in dataclasses.fields(schema)}
    for key in node:
        if key not in known:  # added with '+key=', which Hydra lets through
            raise ConfigError(f"{prefix}{key}", unknown_key(f"{prefix}{key}", root))
    for f in dataclasses.fields(schema):
        if f.name not in node.keys():
            continue
        rule = f.metadata.get("rule")
        if OmegaConf.is_missing(node, f.name):
            if rule is not None:
                raise ConfigError(f"{prefix}{f.name}", f"expected {rule.expected}")
            continue
        value = node[f.name]
        if "float" in str(f.type) and not finite(value):
            raise ConfigError(f"{prefix}{f.name}", f"expected a finite number, got {value!r}")
        if rule is not None and not rule.holds(plain(value)):
            raise ConfigError(f"{prefix}{f.name}", f"expected {rule.expected}, got {plain(value)!r}")
        if isinstance(value, DictConfig):
            check_rules(value, f"{prefix}{f.name}.", root)


def check_option_choices(cfg: DictConfig) -> None:
    """A group's ``name`` is set by the option chosen (``optimizer=sgd``): naming another option's ``name`` would
    leave the keys of one option under the name of another."""
    for group, options in OPTION_SCHEMAS.items():
        if group not in cfg:
            continue
        name = cfg[group].name
        if name not in options:
            raise ConfigError(f"{group}.name", f"expected one of {list(options)} (set with {group}=<name>)")
        if OmegaConf.get_type(cfg[group]) is not options[name]:
            raise ConfigError(f"{group}.name", f"is {name}, but the keys are another option's; choose the option "
                              f"with its group, {group}={name}, not {group}.name")


def plain(node: Any) -> Any:
    """A config node as plain Python data (lists and dicts), anything else as it is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def check_descriptor(cfg: DictConfig) -> None:
    from aenet_exp.descriptor.checks import check_descriptor_settings

    try:
        check_descriptor_settings(**plain(cfg.descriptor))
    except ConfigError as error:
        raise error.within("descriptor") from None


def check_networks(cfg: DictConfig) -> None:
    """One network per species: its layout as the default and every ``per_species`` override."""
    from aenet_exp.model.checks import check_network

    networks = {"model": cfg.model, **{f"model.per_species.{s}": net for s, net in cfg.model.per_species.items()}}
    for key, net in networks.items():
        if not isinstance(net, DictConfig) or not {"hidden", "activations"} <= set(net.keys()):
            raise ConfigError(key, "expected {hidden: [sizes], activations: [names]}")
        try:
            check_network(plain(net.hidden), plain(net.activations))
        except ConfigError as error:
            raise error.within(key) from None


def check_compression(cfg: DictConfig) -> None:
    from aenet_exp.data.hdf5 import check_compression as check

    try:
        check(cfg.data.compression, cfg.data.compression_level)
    except ConfigError as error:
        raise error.within("data") from None


def check_device(cfg: DictConfig) -> None:
    device = cfg.precision.device
    if device is None:
        return
    import torch  # only when a device is named: validation stays quick otherwise

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError("precision.device", f"expected 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError("precision.device", f"expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("precision.device", f"{device!r} requested but CUDA is not available on this machine")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ConfigError("precision.device", f"{device!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")


def device_index(device: str | None) -> int | None:
    """The ``N`` of ``cuda:N`` or ``cpu:N`` (None for ``cpu``, ``cuda`` or no device)."""
    _, _, index = (device or "").partition(":")
    return int(index) if index.isdigit() else None


def check_launch(cfg: DictConfig) -> None:
    """``distributed=ddp`` needs the processes torchrun starts (``RANK``, ``WORLD_SIZE``), and they need it."""
    world_size = os.environ.get("WORLD_SIZE")
    launched = "RANK" in os.environ and world_size is not None
    if cfg.distributed == "ddp" and not launched:
        raise ConfigError(
            "distributed",
            "is 'ddp', but this process was not started by torchrun (no RANK/WORLD_SIZE in the environment); "
            "run torchrun --nproc_per_node=N -m aenet_exp train distributed=ddp ...",
        )
    if cfg.distributed == "none" and launched and int(world_size) > 1:
        raise ConfigError(
            "distributed", f"is 'none', but torchrun started {world_size} processes, each training a copy; add distributed=ddp"
        )
    device = cfg.precision.device
    if cfg.distributed == "ddp" and device_index(device) is not None:
        raise ConfigError(
            "precision.device", f"is {device!r}, but with distributed=ddp each process takes cuda:LOCAL_RANK; "
            "give 'cuda', 'cpu' or null",
        )


# Optimizers that set their own step lengths: (name, how), for the errors of what they cannot honour.
OWN_STEP_LENGTHS = {"lbfgs": ("L-BFGS", "by line search"), "ekf": ("the Kalman filter", "from its gain")}


def check_boolean_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """ConfigError naming the first command-line override that gives a boolean key of ``cfg`` something other than
    true or false (OmegaConf would take ``committee.bootstrap=2`` as true, ``0`` and ``no`` as false)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if override.is_delete() or override.is_sweep_override() or key.startswith("hydra."):
            continue
        group, _, name = key.rpartition(".")
        parent = OmegaConf.select(cfg, group) if group else cfg
        node = parent._get_node(name) if isinstance(parent, DictConfig) and name in parent else None
        value = override.value()
        if isinstance(node, BooleanNode) and not (value is None or isinstance(value, bool)):
            raise ConfigError(key, f"expected true or false, got {override.get_value_element_as_str()!r}")


def check_optimizer_combinations(cfg: DictConfig) -> None:
    """L-BFGS and the EKF have no learning rate to schedule and no weight decay; the EKF runs in one process."""
    name = cfg.optimizer.name
    if name not in OWN_STEP_LENGTHS:
        return
    method, how = OWN_STEP_LENGTHS[name]
    if cfg.scheduler.name != "none" or cfg.scheduler.warmup_epochs:
        raise ConfigError(
            "scheduler", f"is {cfg.scheduler.name} (warm-up {cfg.scheduler.warmup_epochs}), but {method} sets its own "
            f"step lengths {how}: use scheduler=none with optimizer={name}",
        )
    if cfg.optimizer.weight_decay:
        raise ConfigError("optimizer.weight_decay", f"{method} has no weight decay; set it to 0")
    if name == "ekf" and cfg.distributed != "none":
        raise ConfigError(
            "distributed", f"is {cfg.distributed!r}, but the Kalman filter's covariance updates are not shared over "
            "processes; train with optimizer=ekf in one process (distributed=none), or use adam or lbfgs with ddp",
        )


def check_committee(cfg: DictConfig) -> None:
    """Seeds for every member; members that never interact: each trained by a per-weight gradient method, with a
    learning rate that no committee metric steers; a spread to calibrate."""
    committee = cfg.committee
    if committee.name == "none":
        return
    if committee.seeds is not None and len(committee.seeds) != committee.members:
        raise ConfigError("committee.seeds", f"gives {len(committee.seeds)} seeds for {committee.members} members; give "
                          "one per member, or null for seed, seed+1, ...")
    if committee.seeds is not None and len(set(committee.seeds)) < len(committee.seeds):
        repeated = sorted({s for s in committee.seeds if list(committee.seeds).count(s) > 1})
        raise ConfigError("committee.seeds", f"repeats {repeated}: members with one seed train identically and never "
                          "disagree (σ = 0); give distinct seeds, or null for seed, seed+1, ...")
    if committee.bootstrap and cfg.optimizer.name == "ekf":
        raise ConfigError("committee.bootstrap", "weights each structure's errors in the loss, but optimizer=ekf "
                          "measures every error once; use adam, adamw, sgd or lbfgs")
    if committee.calibrate and committee.members < 2:
        raise ConfigError("committee.calibrate", f"needs a spread to calibrate, but committee.members is "
                          f"{committee.members}; train 2 or more members, or set committee.calibrate=false")
    if committee.members < 2:
        return
    if cfg.optimizer.name in OWN_STEP_LENGTHS:
        raise ConfigError("committee.members", f"is {committee.members}, but optimizer={cfg.optimizer.name} steps all "
                          "weights together (members would interact); train committees with adam, adamw or sgd")
    if cfg.scheduler.name == "plateau":
        raise ConfigError("scheduler", "is plateau, which would steer every member's learning rate by the committee's "
                          "metric (members would interact); use scheduler=cosine or none with a committee")


def check_combinations(cfg: DictConfig) -> None:
    norm = cfg.normalization
    if cfg.caching.features and cfg.force.weight > 0:
        raise ConfigError(
            "caching.features",
            f"caches features without gradients and cannot train forces (force.weight={cfg.force.weight}); "
            "use caching.features_for_force, or force=off",
        )
    if cfg.data.test_path is not None and cfg.data.testpercent > 0:
        raise ConfigError(
            "data.testpercent", f"is {cfg.data.testpercent}, but data.test_path gives the test set; set it to 0"
        )
    check_optimizer_combinations(cfg)
    check_committee(cfg)
    caching = cfg.caching
    if caching.derivatives and cfg.force.weight <= 0:
        raise ConfigError(
            "caching.derivatives", "caches what force training needs, but force.weight is 0; train forces or drop it"
        )
    if caching.persist_dir and not (caching.auto or caching.features or caching.features_for_force or caching.neighbors
                                    or caching.triplets):
        raise ConfigError(
            "caching.persist_dir",
            "stores the neighbour, triplet and feature caches, but none is on; "
            "set caching.neighbors, caching.triplets, caching.features or caching.features_for_force (or caching=energy/force)",
        )
    if not norm.energy and (norm.E_shift is not None or norm.E_scaling is not None):
        raise ConfigError("normalization.energy", "is false, but E_shift or E_scaling is given; drop them or set it true")
    if not norm.features and norm.feature_stats is not None:
        raise ConfigError("normalization.features", "is false, but feature_stats is given; drop it or set it true")
    if norm.feature_stats is not None and not Path(norm.feature_stats).is_file():
        raise ConfigError("normalization.feature_stats", f"file not found: {norm.feature_stats}")
    if cfg.resume is not None and not (Path(cfg.resume) / CHECKPOINT_FILE).is_file():
        raise ConfigError("resume", f"no {CHECKPOINT_FILE} in {cfg.resume}; expected the output directory of a run")
    if cfg.resume is not None and cfg.init_from is not None:
        raise ConfigError("init_from", "cannot be combined with resume (a resumed run keeps its own weights)")
    if cfg.tracking.register is not None and not (cfg.tracking.enabled and cfg.tracking.log_model):
        raise ConfigError("tracking.register", "registers the logged model, but tracking.enabled or tracking.log_model is false")


# What a resumed run may change: how long it trains, how it is launched, what it shows and records.
RESUMABLE_KEYS = ("resume", "iterations", "distributed", "tracking.enabled", "tracking.show_progress",
                  "tracking.show_batch_progress", "tracking.timing")


def override_keys(overrides: Sequence[str]) -> list[str]:
    """The keys that command-line ``overrides`` set (``+key=``, ``~key`` included), in order."""
    return [override.split("=", 1)[0].lstrip("+~") for override in overrides]


def check_resume_overrides(overrides: Sequence[str], cfg: DictConfig, stored: DictConfig) -> None:
    """A resumed run continues as it was configured (``stored``): command-line ``overrides`` that give other keys
    values other than the stored ones (in ``cfg``, the composed command line) are refused; the same values, as a
    requeued job repeats its command line, are not changes."""
    changed = []
    for key in override_keys(overrides):
        now, then = setting(cfg, key), setting(stored, key)
        if key not in RESUMABLE_KEYS and (now is ABSENT or now != then):
            changed.append(f"{key} is {now} here, {then} in the run")
    if changed:
        raise ConfigError(
            "resume", f"continues the run as it was configured; {'; '.join(changed)}: these cannot change "
            f"(a resumed run takes only {', '.join(RESUMABLE_KEYS[1:])}); start a new run, or init_from=<run dir>",
        )


class Absent:
    """No such key in a config (``experiment=``, ``~key``: nothing to compare with a stored value)."""

    def __repr__(self) -> str:
        return "absent"


ABSENT = Absent()


def setting(cfg: DictConfig, key: str) -> Any:
    """The value of ``key`` in ``cfg`` as plain data; :data:`ABSENT` when ``cfg`` has no such key."""
    return plain(OmegaConf.select(cfg, key, default=ABSENT))


def check_watched_metrics(scheduler: dict, early_stopping: dict, force_weight: float, has_test_set: bool) -> None:
    """The metrics the schedule and early stopping watch (``scheduler``, ``early_stopping``: their settings) must be
    ones a run training forces with ``force_weight`` produces, with a test set or without (``has_test_set``: known
    once the data is read)."""
    watched = {"scheduler.metric": (scheduler["name"] == "plateau", scheduler.get("metric")),
               "early_stopping.metric": (early_stopping["patience"] is not None, early_stopping["metric"])}
    for key, (active, metric) in watched.items():
        if not active:
            continue
        if metric.startswith("test/") and not has_test_set:
            raise ConfigError(key, f"watches {metric}, but this run has no test structures; use a train/ metric or a test set")
        if "/force" in metric and force_weight == 0:
            raise ConfigError(key, f"watches {metric}, but forces are not trained (force.weight=0)")


def check_data_sources(cfg: DictConfig) -> None:
    """``data.path`` and ``data.test_path`` name files (checked now, before training loads torch; an existing
    ``data.database`` is read instead of ``data.path``)."""
    from aenet_exp.data.readers import resolve_sources
    from aenet_exp.errors import UserError

    database = cfg.data.database
    keys = ["data.test_path"] if database and Path(database).exists() else ["data.path", "data.test_path"]
    for key in keys:
        value = plain(OmegaConf.select(cfg, key))
        if value is not None:
            try:
                resolve_sources(value)
            except UserError as error:
                raise ConfigError(key, str(error)) from None


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first value out of range, unknown choice or bad combination."""
    check_option_choices(cfg)
    check_rules(cfg)
    check_descriptor(cfg)
    check_networks(cfg)
    check_compression(cfg)
    check_device(cfg)
    check_launch(cfg)
    check_combinations(cfg)


def validate_build_db(cfg: DictConfig) -> None:
    """``build-db``'s config: the rules, the compression, and a database to build."""
    check_option_choices(cfg)
    check_rules(cfg)
    check_compression(cfg)
    if not cfg.data.database:
        raise ConfigError("data.database", "expected the path of the HDF5 database to build, e.g. data.database=train.h5")


def validate_ensemble(cfg: DictConfig) -> None:
    """``ensemble``'s config: the rules, and either the runs or a sweep."""
    check_rules(cfg)
    if bool(cfg.runs) == bool(cfg.sweep):
        raise ConfigError("runs", "give the runs (runs=[id,id,...]) or a sweep's parent run (sweep=<run id>), one of them")


def check_learn(cfg: DictConfig) -> None:
    """A campaign's own rules: a committee to disagree, trust levels in order, an oracle that can label."""
    if cfg.committee.name == "none" or cfg.committee.members < 2:
        raise ConfigError("committee", "a campaign sorts frames by its committee's disagreement, but there is no "
                          "committee (committee=none or committee.members < 2); use committee=deep (the default)")
    if cfg.select.trust_low >= cfg.select.trust_high:
        raise ConfigError("select.trust_low", f"is {cfg.select.trust_low}, but must be below select.trust_high "
                          f"({cfg.select.trust_high})")
    from aenet_exp.learning.oracles import Oracle, OracleError, check_oracle  # ASE: only for learn

    o = cfg.oracle
    if o.name == "ase" and not o.calculator:
        raise ConfigError("oracle.calculator", "expected the calculator's import path with oracle=ase, e.g. "
                          "oracle.calculator=ase.calculators.emt.EMT")
    if o.name == "command" and not o.command:
        raise ConfigError("oracle.command", "expected a shell command with oracle=command, e.g. "
                          "oracle.command='run_dft.sh {input} {output}'")
    try:
        check_oracle(Oracle(o.name, calculator=o.get("calculator"), command=o.get("command")))  # the option's keys
    except OracleError as error:
        key = {"ase": "oracle.calculator", "command": "oracle.command"}.get(o.name, "oracle")
        hint = "; pip install 'aenet_exp[oracles]'" if o.name == "xtb" else ""
        raise ConfigError(key, f"{error}{hint}") from None


def validate_learn(cfg: DictConfig) -> None:
    """``learn``'s config: every training rule of :func:`validate` (``resume`` names a campaign here, not a training
    run: checked by the campaign), then the campaign's (:func:`check_learn`)."""
    training = cfg.copy()
    training.resume = None
    validate(training)
    check_learn(cfg)
