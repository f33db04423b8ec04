"""Range, choice and combination checks of a composed config; each failure names its key."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from aenet_exp.model.networks import ACTIVATIONS


class ConfigError(ValueError):
    """A config value a user must change; ``key`` is its dotted Hydra key."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


Rule = Callable[[Any], bool]


def positive(x) -> bool:
    return x is not None and x > 0


def non_negative(x) -> bool:
    return x is not None and x >= 0


def unit_interval(x) -> bool:
    return 0 <= x <= 1


def one_of(*choices: str) -> Rule:
    return lambda x: x in choices


# Metrics a run reports per epoch (and, but for the loss, as final/<name> after training).
EPOCH_METRICS = tuple(
    f"{split}/{name}"
    for split in ("train", "test")
    for name in ("loss", "energy_rmse", "energy_mae", "force_rmse", "force_rmse_vector", "force_mae")
)
OPTIMIZED_METRICS = EPOCH_METRICS

# (key, rule, what was expected)
RANGE_RULES: list[tuple[str, Rule, str]] = [
    ("iterations", positive, "a positive number of epochs"),
    ("optimized_metric", one_of(*OPTIMIZED_METRICS), f"one of {list(OPTIMIZED_METRICS)}"),
    ("distributed", one_of("none", "ddp"), "'none' or 'ddp'"),
    ("seed", non_negative, "a non-negative integer"),
    ("checkpoint.every", non_negative, "a non-negative number of epochs"),
    ("data.testpercent", lambda x: 0 <= x <= 100, "a percentage in [0, 100]"),
    ("data.max_forces", lambda x: x is None or x > 0, "a positive force in eV/Å, or null"),
    ("data.in_memory_cache_size", non_negative, "a non-negative number of structures"),
    ("data.compression", lambda x: x in (None, "gzip", "lzf"), "'gzip', 'lzf' or null"),
    ("data.compression_level", lambda x: x is None or 0 <= x <= 9, "a gzip level 0-9, or null"),
    ("descriptor.rad_order", positive, "a positive Chebyshev order"),
    ("descriptor.ang_order", positive, "a positive Chebyshev order"),
    ("descriptor.rad_cutoff", positive, "a positive cutoff in Å"),
    ("descriptor.ang_cutoff", positive, "a positive cutoff in Å"),
    ("descriptor.min_cutoff", non_negative, "a non-negative distance in Å"),
    ("optimizer.batchsize", positive, "a positive number of structures per batch"),
    ("optimizer.weight_decay", non_negative, "a non-negative weight decay"),
    ("force.weight", unit_interval, "a weight α in [0, 1]"),
    ("force.fraction", lambda x: 0 < x <= 1, "a fraction in (0, 1]"),
    ("force.sampling", one_of("random", "fixed"), "'random' or 'fixed'"),
    ("force.min_structures_per_epoch", lambda x: x is None or x >= 0, "a non-negative count, or null"),
    ("force.epochs_per_window", positive, "a positive number of epochs"),
    ("caching.scope", one_of("train", "val", "all"), "'train', 'val' or 'all'"),
    ("scheduler.name", one_of("none", "plateau", "cosine"), "'none', 'plateau' or 'cosine' (choose with scheduler=...)"),
    ("scheduler.warmup_epochs", non_negative, "a non-negative number of epochs"),
    ("scheduler.warmup_start_factor", lambda x: 0 < x <= 1, "a factor in (0, 1]"),
    ("scheduler.min_lr", non_negative, "a non-negative learning rate"),
    ("scheduler.factor", lambda x: 0 < x < 1, "a factor in (0, 1)"),
    ("scheduler.patience", non_negative, "a non-negative number of epochs"),
    ("scheduler.threshold", non_negative, "a non-negative relative improvement"),
    ("scheduler.metric", one_of(*EPOCH_METRICS), f"one of {list(EPOCH_METRICS)}"),
    ("early_stopping.patience", lambda x: x is None or x >= 1, "a positive number of epochs, or null"),
    ("early_stopping.metric", one_of(*EPOCH_METRICS), f"one of {list(EPOCH_METRICS)}"),
    ("early_stopping.min_delta", non_negative, "a non-negative improvement"),
    ("ema.decay", lambda x: x is None or 0 < x < 1, "a decay in (0, 1), or null"),
    ("dataloader.num_workers", non_negative, "a non-negative number of worker processes"),
    ("dataloader.prefetch_factor", positive, "a positive number of batches per worker"),
    ("precision.dtype", one_of("auto", "float32", "float64"), "'auto', 'float32' or 'float64'"),
    ("precision.memory_mode", one_of("cpu", "gpu", "mixed"), "'cpu', 'gpu' or 'mixed'"),
    ("normalization.energy_target", one_of("cohesive", "total"), "'cohesive' or 'total'"),
    ("normalization.E_scaling", lambda x: x is None or x > 0, "a positive energy scale in eV/atom, or null"),
    ("tracking.experiment", lambda x: bool(str(x).strip()), "a non-empty experiment name"),
    ("tracking.uri", lambda x: bool(str(x).strip()), "an MLflow tracking URI"),
    (
        "tracking.register",
        lambda x: x is None or (bool(str(x).strip()) and not set("/:") & set(str(x))),
        "a registered-model name without '/' or ':', or null",
    ),
]
ADAM_RULES: list[tuple[str, Rule, str]] = [
    ("optimizer.mu", positive, "a positive learning rate"),
    ("optimizer.beta1", lambda x: 0 <= x < 1, "a decay rate in [0, 1)"),
    ("optimizer.beta2", lambda x: 0 <= x < 1, "a decay rate in [0, 1)"),
    ("optimizer.epsilon", positive, "a positive epsilon"),
]
SGD_RULES: list[tuple[str, Rule, str]] = [
    ("optimizer.lr", positive, "a positive learning rate"),
    ("optimizer.momentum", lambda x: 0 <= x < 1, "a momentum in [0, 1)"),
]


def lookup(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if part not in node:
            raise ConfigError(key, "missing; choose the optimizer with its group, e.g. optimizer=sgd, not optimizer.name")
        node = node[part]
    return node


def check_rules(cfg: DictConfig, rules: list[tuple[str, Rule, str]]) -> None:
    for key, rule, expected in rules:
        value = lookup(cfg, key)
        if not rule(value):
            raise ConfigError(key, f"expected {expected}, got {value!r}")


def check_networks(cfg: DictConfig) -> None:
    """Hidden sizes positive, one known activation per hidden layer, for the default and every override."""
    per_species = cfg.model.per_species
    networks = {"model": cfg.model, **{f"model.per_species.{s}": net for s, net in per_species.items()}}
    for key, net in networks.items():
        if not isinstance(net, DictConfig) or not {"hidden", "activations"} <= set(net.keys()):
            raise ConfigError(key, "expected {hidden: [sizes], activations: [names]}")
        if not all(isinstance(size, int) for size in net.hidden):
            raise ConfigError(f"{key}.hidden", f"expected integer layer sizes, got {list(net.hidden)}")
        if any(size < 1 for size in net.hidden):
            raise ConfigError(f"{key}.hidden", f"expected positive layer sizes, got {list(net.hidden)}")
        if len(net.activations) != len(net.hidden):
            raise ConfigError(
                f"{key}.activations",
                f"expected one activation per hidden layer ({len(net.hidden)}), got {list(net.activations)}",
            )
        unknown = [a for a in net.activations if a not in ACTIVATIONS]
        if unknown:
            raise ConfigError(f"{key}.activations", f"unknown {unknown}; expected any of {sorted(ACTIVATIONS)}")


def check_descriptor(cfg: DictConfig) -> None:
    d = cfg.descriptor
    if d.min_cutoff >= min(d.rad_cutoff, d.ang_cutoff):
        raise ConfigError("descriptor.min_cutoff", f"must be below both cutoffs, got {d.min_cutoff} Å")
    if d.species is not None and (not d.species or len(set(d.species)) != len(d.species)):
        raise ConfigError("descriptor.species", f"expected distinct chemical symbols, got {list(d.species)}")


def check_device(cfg: DictConfig) -> None:
    device = cfg.precision.device
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError("precision.device", f"expected 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("precision.device", f"{device!r} requested but CUDA is not available on this machine")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ConfigError("precision.device", f"{device!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError("precision.device", f"expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")


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
    if cfg.distributed == "ddp" and device is not None and torch.device(device).index is not None:
        raise ConfigError(
            "precision.device", f"is {device!r}, but with distributed=ddp each process takes cuda:LOCAL_RANK; "
            "give 'cuda', 'cpu' or null",
        )


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
    caching = cfg.caching
    if caching.derivatives and cfg.force.weight <= 0:
        raise ConfigError(
            "caching.derivatives", "caches what force training needs, but force.weight is 0; train forces or drop it"
        )
    if caching.persist_dir and not (caching.features or caching.features_for_force or caching.neighbors or caching.triplets):
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
    if cfg.resume is not None and not (Path(cfg.resume) / "checkpoint.pt").is_file():
        raise ConfigError("resume", f"no checkpoint.pt in {cfg.resume}; expected the output directory of a run")
    if cfg.resume is not None and cfg.init_from is not None:
        raise ConfigError("init_from", "cannot be combined with resume (a resumed run keeps its own weights)")
    if cfg.data.path is None or (isinstance(cfg.data.path, str) and not cfg.data.path.strip()):
        raise ConfigError("data.path", "expected a file, directory, glob or archive of structures")
    if cfg.tracking.register is not None and not (cfg.tracking.enabled and cfg.tracking.log_model):
        raise ConfigError("tracking.register", "registers the logged model, but tracking.enabled or tracking.log_model is false")


OPTIMIZER_NAMES = ("adam", "adamw", "sgd")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first value out of range, unknown choice or bad combination."""
    if cfg.optimizer.name not in OPTIMIZER_NAMES:
        raise ConfigError("optimizer.name", f"expected one of {list(OPTIMIZER_NAMES)} (set with optimizer=<name>)")
    check_rules(cfg, RANGE_RULES)
    check_rules(cfg, SGD_RULES if cfg.optimizer.name == "sgd" else ADAM_RULES)
    check_networks(cfg)
    check_descriptor(cfg)
    check_device(cfg)
    check_launch(cfg)
    check_combinations(cfg)
