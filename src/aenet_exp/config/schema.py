"""The structured configs of every command: ``train``'s, one dataclass per Hydra group, and one primary
dataclass per other command (``build-db``, ``export``, ``select``, ``ensemble``), which composes the groups it needs.

Each group's YAML options under ``conf/<group>/`` are validated against the dataclass stored
under the same group here (see :mod:`aenet_exp.config.store`). The dataclasses hold the defaults
(a YAML option sets only what it changes); every field carries its meaning, its range rule where
it has one, and the name of the ænet ``TorchTrainingConfig`` parameter it implements;
``docs/configuration.md`` is generated from them.

Keys that a component checks itself (the descriptor's orders and cutoffs, the networks' layers,
the database compression) carry no rule here: validation calls that component's own check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from aenet_exp.config.rules import (
    Rule,
    below,
    non_blank,
    non_negative,
    one_of,
    optional,
    path_or_paths,
    positive,
    references,
    within,
)

# Metrics a run reports per epoch (and, but for the loss, as final/<name> after training).
EPOCH_METRICS = tuple(
    f"{split}/{name}"
    for split in ("train", "test")
    for name in ("loss", "energy_rmse", "energy_mae", "force_rmse", "force_rmse_vector", "force_mae")
)
# Seeds of the random streams are ``seed`` plus small offsets, all within torch's and numpy's 64-bit range.
SEED_LIMIT = 2**62
# The scheduler group's options; training.schedule builds each (one registry, keyed by the choice).
SCHEDULERS = ("none", "cosine", "plateau")
# The sampling group's options (training.sampling.EpochSampling).
SAMPLING_POLICIES = ("uniform", "energy_weighted", "error_weighted")
# The augment group's options (training.augment; data.taylor makes the children).
AUGMENT_METHODS = ("none", "taylor")
# learn's groups with one option each: how a generation explores, and the oracle that labels.
EXPLORATIONS = ("md", "npt")
ORACLES = ("emt", "xtb", "ase", "command")
DIVERSITY_RULES = ("farthest_point", "none")
# The committee group's options (model.potential.Potential with members; evaluation.uncertainty).
COMMITTEES = ("none", "deep")
# Where runs are recorded unless tracking.uri says otherwise (relative to the working directory), and in which
# experiment; ``model.locate`` falls back to the same store for ``runs:/`` locations given without one.
TRACKING_URI = "sqlite:///outputs/mlflow.db"
EXPERIMENT = "aenet_exp"
# select's ranking criteria (selection.ranking.CRITERIA, by name).
SELECTION_CRITERIA = ("energy", "forces")
# export's output formats.
EXPORT_FORMATS = ("aenet",)


def param(
    default: Any, meaning: str, reference: str | None = None, rule: Rule | None = None, unit: str = ""
) -> Any:
    """A dataclass field with its documentation, unit and range rule (lists and dicts are copied per instance)."""
    metadata = {"meaning": meaning, "reference": reference, "rule": rule, "unit": unit}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def chosen_option(group: str, options: tuple[str, ...], meaning: str, option: Any = MISSING) -> Any:
    """The ``name`` field of a group whose options each set it: ``meaning``, and a rule naming the options;
    ``option``: the option whose dataclass this is (a group's base has none)."""
    quoted = [f"'{option}'" for option in options]
    listed = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    return param(option, f"{meaning} (chosen by the {group} group)", None,
                 Rule(one_of(*options), f"{listed} (choose with {group}=...)"))


EPOCHS = Rule(positive, "a positive number of epochs")
FRACTION_OPEN_AT_ZERO = Rule(within(0, 1, low_open=True), "a fraction in (0, 1]")
WATCHED_METRIC = Rule(one_of(*EPOCH_METRICS), f"one of {list(EPOCH_METRICS)}")
STRUCTURES = "a file, directory, glob or archive of structures, or a list of them (quote a numeric name: '2024')"
REFERENCES = Rule(references, "{symbol: eV} with finite energies, the path of a file of isolated atoms, or null")


@dataclass
class DataConfig:
    name: Optional[str] = param(None, "a label for the data set, logged with the run (null: from data.path)")
    path: Any = param(
        MISSING, "structure file, directory, glob, tar archive, or a list of those", None, Rule(path_or_paths, STRUCTURES)
    )
    E_atomic: Any = param(
        None, "reference energies of the data set's species, {symbol: eV} or a file of isolated atoms "
        "(set by the data option that describes the data; normalization.E_atomic, when given, wins)", None, REFERENCES,
        unit="eV",
    )
    testpercent: float = param(
        10.0, "percentage of structures held out for testing (0–100), seeded split", "testpercent",
        Rule(within(0, 100), "a percentage in [0, 100]"),
        unit="%",
    )
    max_energy: Optional[float] = param(
        None, "drop structures above this energy, eV/atom in the target energy space", "max_energy",
        unit="eV/atom",
    )
    max_forces: Optional[float] = param(
        None, "drop structures whose largest force component exceeds this, eV/Å", "max_forces",
        Rule(optional(positive), "a positive force in eV/Å, or null"),
        unit="eV/Å",
    )
    test_path: Any = param(
        None, "external test set (file, directory, glob, archive or list); with it, data.path is all for training "
        "(data.testpercent 0 unless given: then it must be 0)", None, Rule(optional(path_or_paths), f"{STRUCTURES}, or null"),
    )
    database: Optional[str] = param(
        None, "HDF5 structure database (.h5): built from data.path when absent, then read lazily",
        "HDF5StructureDataset.database_file",
    )
    in_memory_cache_size: int = param(
        2048, "structures kept per process in the database's LRU cache", "HDF5StructureDataset.in_memory_cache_size",
        Rule(non_negative, "a non-negative number of structures"),
        unit="structures",
    )
    compression: Optional[str] = param("gzip", "database compression: gzip | lzf | null", "HDF5StructureDataset.compression")
    compression_level: Optional[int] = param(
        4, "gzip level 0–9 (database)", "HDF5StructureDataset.compression_level"
    )


@dataclass
class DescriptorConfig:
    species: Optional[list[str]] = param(
        None, "species order of the descriptor; null = every species of the data, sorted alphabetically"
    )
    rad_order: int = param(10, "highest radial Chebyshev order")
    rad_cutoff: float = param(6.0, "radial cutoff, Å", unit="Å")
    ang_order: int = param(4, "highest angular Chebyshev order")
    ang_cutoff: float = param(4.0, "angular cutoff, Å", unit="Å")
    min_cutoff: float = param(0.0, "pairs closer than this are ignored, Å (ænet's Fortran code: 0)", unit="Å")


@dataclass
class ModelConfig:
    hidden: list[int] = param([10, 10], "hidden layer sizes of every species' network")
    activations: list[str] = param(
        ["tanh", "tanh"], "activation after each hidden layer: linear, tanh, sigmoid, relu, mtanh, twist"
    )
    per_species: dict[str, Any] = param(
        {}, "networks by symbol, added with '+model.per_species.O={hidden: [..], activations: [..]}'"
    )


OPTIMIZER_CHOICE = "adam | adamw | sgd | lbfgs | ekf (chosen by the optimizer group)"
BATCHSIZE = Rule(positive, "a positive number of structures per batch")


@dataclass
class OptimizerConfig:
    name: str = param(MISSING, OPTIMIZER_CHOICE, "method")
    batchsize: int = param(32, "structures per batch", "method.batchsize", BATCHSIZE, unit="structures")
    weight_decay: float = param(
        0.0, "L2 penalty (adam, sgd) or decoupled weight decay (adamw)", "method.weight_decay",
        Rule(non_negative, "a non-negative weight decay"),
    )


DECAY_RATE = Rule(within(0, 1, high_open=True), "a decay rate in [0, 1)")


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = param("adam", OPTIMIZER_CHOICE, "method")
    mu: float = param(1e-3, "learning rate", "Adam.mu", Rule(positive, "a positive learning rate"))
    beta1: float = param(0.9, "first-moment decay", "Adam.beta1", DECAY_RATE)
    beta2: float = param(0.999, "second-moment decay", "Adam.beta2", DECAY_RATE)
    epsilon: float = param(1e-8, "numerical stability term", "Adam.epsilon", Rule(positive, "a positive epsilon"))


@dataclass
class AdamWConfig(AdamConfig):
    name: str = param("adamw", OPTIMIZER_CHOICE, "method")
    weight_decay: float = param(
        1e-2, "decoupled weight decay", "method.weight_decay", Rule(non_negative, "a non-negative weight decay")
    )


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = param("sgd", OPTIMIZER_CHOICE, "method")
    lr: float = param(1e-2, "learning rate", "SGD.lr", Rule(positive, "a positive learning rate"))
    momentum: float = param(
        0.9, "momentum coefficient", "SGD.momentum", Rule(within(0, 1, high_open=True), "a momentum in [0, 1)")
    )


@dataclass
class LBFGSConfig(OptimizerConfig):
    name: str = param("lbfgs", OPTIMIZER_CHOICE, "method")
    batchsize: int = param(
        128, "structures per batch of the loss's evaluation (one batch's graph in memory at a time)",
        "method.batchsize", BATCHSIZE, unit="structures",
    )
    lr: float = param(1.0, "step scale of the line search's first trial", None, Rule(positive, "a positive step scale"))
    max_iter: int = param(
        20, "L-BFGS iterations per epoch, each one or more loss evaluations over the training set", None,
        Rule(positive, "a positive number of iterations"),
    )
    history_size: int = param(10, "curvature pairs kept", None, Rule(positive, "a positive number of pairs"))
    tolerance_grad: float = param(
        1e-7, "stop an epoch's iterations when the largest gradient component is below this", None,
        Rule(non_negative, "a non-negative tolerance"),
    )
    tolerance_change: float = param(
        1e-9, "stop an epoch's iterations when the loss or the step changes less than this", None,
        Rule(non_negative, "a non-negative tolerance"),
    )


@dataclass
class EKFConfig(OptimizerConfig):
    name: str = param("ekf", OPTIMIZER_CHOICE, "method")
    batchsize: int = param(
        16, "structures per Kalman update (each structure's energy error is one measurement)", "method.batchsize",
        BATCHSIZE,
        unit="structures",
    )
    lambda0: float = param(
        0.98, "initial forgetting factor λ of the Kalman filter (smaller forgets old batches faster)", None,
        Rule(within(0, 1, low_open=True), "a forgetting factor in (0, 1]"),
    )
    nue: float = param(
        0.9987, "forgetting schedule ν: after each update λ ← ν·λ + 1 − ν (λ → 1)", None,
        Rule(within(0, 1), "a rate ν in [0, 1]"),
    )
    p0: float = param(
        1.0, "initial error covariance P = p0·I of the weights (normalised units)", None,
        Rule(positive, "a positive covariance"),
    )
    process_noise: float = param(
        0.0, "q added to the covariance diagonal after each update (keeps the filter adapting)", None,
        Rule(non_negative, "a non-negative process noise"),
    )
    force_measurements: int = param(
        8, "measurements the batch's force errors make: groups of its atoms, each group's mean absolute error", None,
        Rule(positive, "a positive number of measurements"),
    )
    blocks: str = param(
        "species", "covariance blocks: species (one per species' network) | layer (one per layer)", None,
        Rule(one_of("species", "layer"), "species or layer"),
    )


# The optimizer group's options, by choice: each option's YAML extends base_<choice>.
OPTIMIZER_SCHEMAS = {"adam": AdamConfig, "adamw": AdamWConfig, "sgd": SGDConfig, "lbfgs": LBFGSConfig,
                     "ekf": EKFConfig}


@dataclass
class ForceConfig:
    weight: float = param(
        0.0, "α in loss = (1−α)·RMSE(E/atom) + α·RMSE(F), 0–1", "force_weight", Rule(within(0, 1), "a weight α in [0, 1]")
    )
    fraction: float = param(
        1.0, "share of force-labelled training structures supervised on forces per epoch, (0, 1]", "force_fraction",
        FRACTION_OPEN_AT_ZERO,
    )
    sampling: str = param(
        "random", "random: re-drawn subsets | fixed: one subset for the whole run", "force_sampling",
        Rule(one_of("random", "fixed"), "'random' or 'fixed'"),
    )
    resample_each_epoch: bool = param(
        True, "with random sampling, re-draw every window (else draw once)", "force_resample_each_epoch"
    )
    min_structures_per_epoch: Optional[int] = param(
        1, "at least this many structures supervised on forces per epoch", "force_min_structures_per_epoch",
        Rule(optional(non_negative), "a non-negative count, or null"),
        unit="structures",
    )
    scale_unbiased: bool = param(False, "multiply the force RMSE in the loss by sqrt(1/fraction)", "force_scale_unbiased")
    epochs_per_window: int = param(1, "epochs between re-draws of the force subset", "epochs_per_force_window", EPOCHS, unit="epochs")


@dataclass
class CachingConfig:
    auto: bool = param(
        False, "keep what cannot change results and fits in memory: energy-only training keeps features; force "
        "training keeps the features of structures not supervised on forces and, within a quarter of the memory, "
        "the feature Jacobians of those that are (adds to the flags below; caching=none: nothing kept)",
    )
    features: bool = param(False, "compute features once (energy-only training)", "cached_features")
    features_for_force: bool = param(
        False, "keep features of structures not supervised on forces during a force window", "cached_features_for_force"
    )
    neighbors: bool = param(False, "keep each structure's neighbour-pair list across epochs", "cache_neighbors")
    triplets: bool = param(False, "keep each structure's whole graph (pairs and triplets)", "cache_triplets")
    persist_dir: Optional[str] = param(
        None, "directory where neighbour, triplet and feature caches are stored and reused by later runs",
        "cache_persist_dir",
    )
    derivatives: bool = param(
        False, "force training: keep features and their sparse Jacobian w.r.t. positions of each force structure, "
        "forces as a sparse product with dE/dfeatures instead of re-running the descriptor under autograd",
    )
    scope: str = param(
        "all", "which split is cached: train | val | all", "cache_scope",
        Rule(one_of("train", "val", "all"), "'train', 'val' or 'all'"),
    )


SCHEDULE_MEANING = "learning-rate schedule per epoch: none | plateau | cosine"


@dataclass
class SchedulerConfig:
    """The keys of every schedule: the warm-up before it."""

    name: str = chosen_option("scheduler", SCHEDULERS, SCHEDULE_MEANING)
    warmup_epochs: int = param(
        0, "epochs of linear warm-up from warmup_start_factor × lr to lr, before the schedule", None,
        Rule(non_negative, "a non-negative number of epochs"),
        unit="epochs",
    )
    warmup_start_factor: float = param(
        0.1, "learning-rate factor at the first warm-up epoch, (0, 1]", None, Rule(within(0, 1, low_open=True), "a factor in (0, 1]")
    )


MIN_LR = Rule(non_negative, "a non-negative learning rate")


@dataclass
class CosineScheduleConfig(SchedulerConfig):
    name: str = chosen_option("scheduler", SCHEDULERS, SCHEDULE_MEANING, "cosine")
    min_lr: float = param(0.0, "learning rate at the last epoch", None, MIN_LR)


@dataclass
class PlateauScheduleConfig(SchedulerConfig):
    name: str = chosen_option("scheduler", SCHEDULERS, SCHEDULE_MEANING, "plateau")
    min_lr: float = param(1e-6, "lowest learning rate the reductions reach", None, MIN_LR)
    factor: float = param(
        0.5, "multiply the learning rate by this when the metric stalls, (0, 1)", None,
        Rule(within(0, 1, low_open=True, high_open=True), "a factor in (0, 1)"),
    )
    patience: int = param(
        10, "epochs without improvement before reducing", None, Rule(non_negative, "a non-negative number of epochs"),
        unit="epochs",
    )
    threshold: float = param(
        1e-4, "relative improvement that counts", None, Rule(non_negative, "a non-negative relative improvement")
    )
    metric: str = param("test/loss", "the metric watched (test/* needs a test set; else train/*)", None, WATCHED_METRIC)


@dataclass
class SamplingConfig:
    name: str = chosen_option(
        "sampling", SAMPLING_POLICIES, "which training structures fill an epoch: uniform (each once, shuffled) | "
        "energy_weighted (drawn with replacement, lower energy per atom more often) | error_weighted (drawn with "
        "replacement in proportion to the latest energy error)",
    )


SEED = Rule(lambda x: non_negative(x) and below(SEED_LIMIT)(x), "a non-negative integer below 2**62")


AUGMENT_MEANING = (
    "training structures added from the training split's structures with forces: none | taylor (each such "
    "structure's `children` copies, every atom displaced by a seeded Gaussian δ and labelled with the first-order "
    "energy E − Σ δ·F, no forces; Cooper et al., npj Comput. Mater. 6, 54 (2020))"
)


@dataclass
class AugmentConfig:
    name: str = chosen_option("augment", AUGMENT_METHODS, AUGMENT_MEANING)


@dataclass
class TaylorConfig(AugmentConfig):
    name: str = chosen_option("augment", AUGMENT_METHODS, AUGMENT_MEANING, "taylor")
    children: int = param(
        4, "children per training structure with forces", None,
        Rule(positive, "a positive number of children"),
        unit="structures",
    )
    displacement: float = param(
        0.02, "standard deviation of every Cartesian component of δ, Å (the RMS per component; an atom's "
        "displacement vector has RMS length √3 times it)", None, Rule(positive, "a positive displacement in Å"),
        unit="Å",
    )
    seed: Optional[int] = param(
        None, "seed of the displacements (a parent's children are drawn from (seed, its position in the "
        "data as read)); null: the run's seed + 3", None, Rule(optional(SEED.holds), f"{SEED.expected}, or null"),
    )


COMMITTEE_MEANING = (
    "uncertainty from a committee: none (one network per species) | deep (a deep ensemble: `members` networks per "
    "species from different seeds, trained side by side in one pass over shared features; the prediction is their "
    "mean, the uncertainty their standard deviation)"
)


@dataclass
class CommitteeConfig:
    name: str = chosen_option("committee", COMMITTEES, COMMITTEE_MEANING)


@dataclass
class DeepCommitteeConfig(CommitteeConfig):
    name: str = chosen_option("committee", COMMITTEES, COMMITTEE_MEANING, "deep")
    members: int = param(
        5, "committee members, each with its own networks and loss (1 trains exactly the single model)", None,
        Rule(positive, "a positive number of members"), unit="networks per species",
    )
    seeds: Optional[list[int]] = param(
        None, "member k's initial weights are drawn as a single run with seed=seeds[k] draws them; the split, "
        "batches and force subsets follow `seed` for all members (null: seed, seed+1, ...)", None,
        Rule(optional(lambda seeds: all(SEED.holds(s) for s in seeds)), f"a list of seeds, each {SEED.expected}"),
    )
    bootstrap: bool = param(
        False, "each member trains on its own seeded resample (with replacement) of the training structures, as "
        "weights per structure in its loss (how often the resample holds it); the batches stay shared",
    )
    calibrate: bool = param(
        True, "hold `calibration_percent` of the training structures out of training and fit on them one factor "
        "for the energy σ and one for the force σ (maximum likelihood of the Gaussian errors; Imbalzano et al., J. "
        "Chem. Phys. 154, 074102 (2021)), saved with the potential and applied to every σ predicted afterwards",
    )
    calibration_percent: float = param(
        10.0, "with calibrate: percentage of the training split held out for the calibration (seeded)", None,
        Rule(within(0, 100, low_open=True, high_open=True), "a percentage in (0, 100)"), unit="%",
    )


@dataclass
class EarlyStoppingConfig:
    patience: Optional[int] = param(
        None, "stop after this many epochs without improvement of the metric and keep the best model (null: off)", None,
        Rule(optional(lambda x: x >= 1), "a positive number of epochs, or null"),
        unit="epochs",
    )
    metric: str = param(
        "test/loss", "the metric watched, lower is better (test/* needs a test set; else train/*)", None, WATCHED_METRIC
    )
    min_delta: float = param(0.0, "smallest decrease that counts as an improvement", None, Rule(non_negative, "a non-negative improvement"))


@dataclass
class EmaConfig:
    decay: Optional[float] = param(
        None, "exponential moving average of the weights, updated after every step; evaluation, checkpoints' best "
        "model and the saved potential use the averaged weights (null: off; typical 0.99–0.999)", None,
        Rule(optional(within(0, 1, low_open=True, high_open=True)), "a decay in (0, 1), or null"),
    )


@dataclass
class CheckpointConfig:
    keep: int = param(
        1, "checkpoints kept: checkpoint.pt (the newest, which resume= takes) and, above 1, the last keep as "
        "checkpoints/epoch-<N>.pt; the best by early_stopping.metric is always kept (checkpoints/best.pt, its weights "
        "as potential-best.pt for init_from)",
        None, Rule(positive, "a positive number of checkpoints"),
    )
    every: int = param(
        10, "write checkpoint.pt every this many epochs (and at the end); 0: only at the end", None,
        Rule(non_negative, "a non-negative number of epochs"),
        unit="epochs",
    )


@dataclass
class DataLoaderConfig:
    num_workers: int = param(
        0, "worker processes building neighbour lists and triplets", "num_workers",
        Rule(non_negative, "a non-negative number of worker processes"),
        unit="processes",
    )
    prefetch_factor: int = param(
        2, "batches prepared ahead per worker (with workers)", "prefetch_factor",
        Rule(positive, "a positive number of batches per worker"),
        unit="batches",
    )
    persistent_workers: bool = param(True, "keep workers (and their caches) between epochs", "persistent_workers")


@dataclass
class PrecisionConfig:
    dtype: str = param(
        "auto", "auto (float32 on CPU, float64 on GPU) | float32 | float64", "precision",
        Rule(one_of("auto", "float32", "float64"), "'auto', 'float32' or 'float64'"),
    )
    device: Optional[str] = param(None, "cpu | cuda | cuda:N; null = CUDA when present, else CPU", "device")
    memory_mode: str = param(
        "gpu", "where energy targets and cached features live — cpu: host, moved per batch | gpu: the device, "
        "moved once | mixed: features on the device, targets on the host (graphs are built on the host per batch)",
        "memory_mode", Rule(one_of("cpu", "gpu", "mixed"), "'cpu', 'gpu' or 'mixed'"),
    )


@dataclass
class NormalizationConfig:
    energy_target: str = param(
        "cohesive", "cohesive (minus E_atomic) | total energies", "energy_target",
        Rule(one_of("cohesive", "total"), "'cohesive' or 'total'"),
    )
    E_atomic: Any = param(
        None, "{symbol: eV}, a structure file of isolated atoms, or fit (least squares on the training split: "
        "E ≈ Σ_species count·E_s); null: the data's own (data.E_atomic)", "E_atomic",
        REFERENCES,
        unit="eV",
    )
    E_atomic_fixed: Any = param(
        None, "with E_atomic=fit: reference energies held at these values ({symbol: eV}), the others fitted", None,
        Rule(lambda x: x is None or (references(x) and not isinstance(x, str)), "{symbol: eV} with finite energies, or null"),
        unit="eV",
    )
    features: bool = param(True, "standardise features with training-set mean and std", "normalize_features")
    energy: bool = param(True, "shift and scale per-atom energies onto [−1, 1]", "normalize_energy")
    feature_stats: Optional[str] = param(None, ".npz or .json file with 'mean' and 'std' arrays", "feature_stats")
    E_shift: Optional[float] = param(None, "per-atom energy shift, eV/atom (null: from the training set)", "E_shift", unit="eV/atom")
    E_scaling: Optional[float] = param(
        None, "per-atom energy scale, eV/atom (null: from the training set)", "E_scaling",
        Rule(optional(positive), "a positive energy scale in eV/atom, or null"),
        unit="eV/atom",
    )


def registrable_model_name(x) -> bool:
    return x is None or (non_blank(x) and not set("/:") & set(str(x)))


@dataclass
class TrackingConfig:
    enabled: bool = param(True, "record the run in MLflow")
    uri: str = param(
        TRACKING_URI, "MLflow tracking store (relative to the working directory)", None,
        Rule(non_blank, "an MLflow tracking URI"),
    )
    experiment: str = param(EXPERIMENT, "MLflow experiment name", None, Rule(non_blank, "a non-empty experiment name"))
    run_name: Optional[str] = param(None, "MLflow run name (null: generated)")
    log_model: bool = param(
        True, "log the potential as the MLflow pyfunc model runs:/<run_id>/model (predict: structures → energies, eV)"
    )
    register: Optional[str] = param(
        None, "register the logged model under this name in the MLflow model registry, a new version per run (null: no)",
        None, Rule(registrable_model_name, "a registered-model name without '/' or ':', or null"),
    )
    save_energies: bool = param(False, "write energies.{train,test}.predicted", "save_energies")
    save_forces: bool = param(False, "write forces.{train,test}.predicted", "save_forces")
    timing: bool = param(False, "time/* metrics per phase and a summary at the end", "timing")
    show_progress: bool = param(True, "epoch progress bar (on a terminal)", "show_progress")
    show_batch_progress: bool = param(False, "batch progress bar (on a terminal)", "show_batch_progress")


@dataclass
class TrainConfig:
    iterations: int = param(100, "training epochs", "iterations", EPOCHS, unit="epochs")
    seed: int = param(0, "seed of the split, initialisation, shuffling, force sampling and augmentation", None, SEED)
    resume: Optional[str] = param(
        None, "a run directory: continue its training (same config, same MLflow run) up to `iterations` epochs"
    )
    init_from: Optional[str] = param(
        None, "a run directory or model file: start from its weights and normalisation, with a fresh optimiser"
    )
    optimized_metric: str = param(
        "test/energy_rmse",
        "metric whose final value a job returns to the sweeper (minimised by hparams_search): "
        "train/ or test/ energy_rmse (eV/atom), force_rmse (eV/Å), or train/loss",
        None, WATCHED_METRIC,
    )
    distributed: str = param(
        "none",
        "none: one process | ddp: data-parallel over the processes torchrun starts (gloo on CPU, nccl on CUDA, "
        "cuda:LOCAL_RANK per process); each batch is shared out by atoms, gradients summed, rank 0 records",
        None, Rule(one_of("none", "ddp"), "'none' or 'ddp'"),
    )
    checkpoint: CheckpointConfig = MISSING
    early_stopping: EarlyStoppingConfig = MISSING
    ema: EmaConfig = MISSING
    scheduler: Any = MISSING  # one dataclass per option: OPTION_SCHEMAS
    sampling: SamplingConfig = MISSING
    augment: Any = MISSING
    committee: Any = MISSING
    data: DataConfig = MISSING
    descriptor: DescriptorConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: Any = MISSING
    force: ForceConfig = MISSING
    caching: CachingConfig = MISSING
    dataloader: DataLoaderConfig = MISSING
    precision: PrecisionConfig = MISSING
    normalization: NormalizationConfig = MISSING
    tracking: TrackingConfig = MISSING


RUN = "a run directory, a model file or runs:/<run_id>[/path]"


def required(meaning: str, example: str) -> Any:
    """A key without a default: the command needs it (``meaning``, e.g. ``example``)."""
    return param(MISSING, meaning, None, Rule(non_blank, f"{meaning}, e.g. {example}"))


@dataclass
class BuildDbConfig:
    """``python -m aenet_exp build-db``: the data group (``data.database`` is built from ``data.path``) and the
    training augmentation, whose Taylor children the database then holds."""

    seed: int = param(0, "seed of the augmentation (augment.seed null: seed + 3, as training draws them)", None, SEED)
    show_progress: bool = param(True, "progress bar (on a terminal)")
    data: DataConfig = MISSING
    augment: Any = MISSING  # one dataclass per option: OPTION_SCHEMAS


@dataclass
class ExportConfig:
    """``python -m aenet_exp export``: a trained potential in another program's format."""

    run: str = required(f"the potential: {RUN}", "run=outputs/runs/<time>")
    format: str = param("aenet", "the output format: aenet (docs/aenet_format.md)", None,
                        Rule(one_of(*EXPORT_FORMATS), f"one of {list(EXPORT_FORMATS)}"))
    out: Optional[str] = param(
        None, "the output directory (null: <run dir>/aenet, aenet beside a model file, or ./aenet-<run_id>), replaced "
        "whole; a folder holding other files than an export's is refused; a symbolic link is followed", None,
        Rule(optional(non_blank), "a directory, or null"),
    )
    rmin: Optional[float] = param(
        None, "ænet's minimal interatomic distance (null: the descriptor's min_cutoff, else 0.5 Å)", None,
        Rule(optional(positive), "a positive distance in Å, or null"), unit="Å",
    )
    tracking: TrackingConfig = MISSING


@dataclass
class SelectConfig:
    """``python -m aenet_exp select``: pool structures ranked by a committee's disagreement, the top written."""

    run: str = required(f"the committee: {RUN}", "run=outputs/runs/<time>")
    pool: str = required(
        "the candidate structures: files, a directory, a glob, a tar archive or an HDF5 database (.h5)",
        "pool='candidates/*.xyz'",
    )
    n: int = param(50, "how many structures to select", None, Rule(positive, "a positive integer"), unit="structures")
    out: str = param("selected.xyz", "the extended XYZ file written (a symbolic link is followed: the file it points "
                     "to is replaced)", None, Rule(non_blank, "a file name"))
    by: str = param(
        "energy", "energy (σ of the energy per atom) | forces (largest per-atom |σ_F|)", None,
        Rule(one_of(*SELECTION_CRITERIA), f"one of {list(SELECTION_CRITERIA)}"),
    )
    batch_size: int = param(64, "structures evaluated at a time", None, Rule(positive, "a positive integer"),
                            unit="structures")
    tracking: TrackingConfig = MISSING


@dataclass
class EnsembleConfig:
    """``python -m aenet_exp ensemble``: finished runs (same data, descriptor and layout) as one calibrated
    committee."""

    runs: Optional[list[str]] = param(
        None, "the finished runs: MLflow run ids, run directories or runs:/<run_id>, as a list: runs=[id,id,...]"
    )
    sweep: Optional[str] = param(None, "instead of runs: the parent run of a sweep (its FINISHED jobs)")
    out: Optional[str] = param(
        None, "the directory written (null: outputs/ensembles/<time>); a symbolic link is followed; a folder holding "
        "a run's files (a training's, another ensemble's) or in use is refused", None,
        Rule(optional(non_blank), "a directory, or null"),
    )
    overwrite: bool = param(False, "write into an out= folder that holds other files (files of the committee's "
                            "names among them are replaced)")
    tracking: TrackingConfig = MISSING


TEMPERATURES = Rule(lambda values: len(values) > 0 and all(isinstance(t, (int, float)) and t > 0 for t in values),
                    "a non-empty list of positive temperatures in K, e.g. [300, 600]")


EXPLORE_MEANING = ("how a generation explores with its committee: md (ASE Langevin NVT) | npt (ASE NPT-Berendsen, "
                   "periodic cells only)")


@dataclass
class ExploreConfig:
    """The keys of every exploration."""

    name: str = chosen_option("explore", EXPLORATIONS, EXPLORE_MEANING)
    temperatures: list[float] = param([300.0, 600.0], "temperatures of the trajectories", None, TEMPERATURES, unit="K")
    steps: int = param(200, "MD steps per trajectory", None, Rule(positive, "a positive number of steps"), unit="steps")
    timestep: float = param(2.0, "MD timestep", None, Rule(positive, "a positive timestep in fs"), unit="fs")
    trajectories: int = param(1, "trajectories per temperature, each from a start drawn from the labelled data (or "
                              "start_path)", None, Rule(positive, "a positive number of trajectories"))
    every: int = param(10, "MD steps between recorded frames", None, Rule(positive, "a positive number of steps"),
                       unit="steps")
    patience: int = param(3, "failed frames in a row (σ at or above select.trust_high) that end a trajectory: it has "
                          "left physical space", None, Rule(positive, "a positive number of frames"), unit="frames")
    start_path: Any = param(None, "structures the trajectories start from (null: the seed data of data.path)", None,
                            Rule(optional(path_or_paths), f"{STRUCTURES}, or null"))


@dataclass
class LangevinConfig(ExploreConfig):
    name: str = chosen_option("explore", EXPLORATIONS, EXPLORE_MEANING, "md")
    friction: float = param(0.02, "Langevin friction", None, Rule(positive, "a positive friction in 1/fs"), unit="1/fs")


@dataclass
class NptConfig(ExploreConfig):
    name: str = chosen_option("explore", EXPLORATIONS, EXPLORE_MEANING, "npt")
    pressure: float = param(0.0, "external pressure", None, unit="GPa")


@dataclass
class TrustWindowConfig:
    by: str = param("forces", "what σ a frame is judged by: forces (largest per-atom |σ_F|, eV/Å) | energy (σ of the "
                    "energy per atom, eV/atom)", None, Rule(one_of(*SELECTION_CRITERIA), f"one of {list(SELECTION_CRITERIA)}"))
    trust_low: float = param(0.1, "below it a frame is accurate (calibrated σ, the unit of `by`)", None,
                             Rule(non_negative, "a non-negative σ"), unit="eV/Å or eV/atom")
    trust_high: float = param(0.5, "at or above it a frame is failed (unphysical, never labelled); between the two "
                              "levels, a candidate", None, Rule(positive, "a positive σ"), unit="eV/Å or eV/atom")
    max_per_generation: int = param(8, "candidates labelled per generation at most", None,
                                    Rule(positive, "a positive number of structures"), unit="structures")
    diversity: str = param("farthest_point", "among the candidates: farthest_point (the most uncertain first, then "
                           "each the farthest in mean descriptor space from those chosen) | none (by σ alone)", None,
                           Rule(one_of(*DIVERSITY_RULES), f"one of {list(DIVERSITY_RULES)}"))


ORACLE_MEANING = (
    "what labels a structure with energy and forces: emt (ASE's EMT) | xtb (GFN2-xTB through tblite, pip install "
    "'aenet_exp[oracles]') | ase (any ASE calculator: oracle.calculator) | command (a shell command: oracle.command)"
)


@dataclass
class OracleConfig:
    """The keys of every oracle: how many labels at once, and how long each may take."""

    name: str = chosen_option("oracle", ORACLES, ORACLE_MEANING)
    workers: int = param(1, "labels computed at once (each in a process of its own)", None,
                         Rule(positive, "a positive number of workers"), unit="processes")
    timeout: Optional[float] = param(None, "seconds a label may take before it is killed and recorded as failed (null: "
                                     "no limit)", None, Rule(optional(positive), "a positive time in s, or null"), unit="s")


@dataclass
class XtbOracleConfig(OracleConfig):
    name: str = chosen_option("oracle", ORACLES, ORACLE_MEANING, "xtb")
    kwargs: dict[str, Any] = param({}, "tblite's calculator's keyword arguments, e.g. '+oracle.kwargs={method: "
                                   "GFN1-xTB}' (method GFN2-xTB unless given)")


@dataclass
class AseOracleConfig(OracleConfig):
    name: str = chosen_option("oracle", ORACLES, ORACLE_MEANING, "ase")
    calculator: Optional[str] = param(None, "the calculator class's import path, e.g. ase.calculators.vasp.Vasp")
    kwargs: dict[str, Any] = param({}, "the calculator's keyword arguments, e.g. '+oracle.kwargs={xc: PBE}'")


@dataclass
class CommandOracleConfig(OracleConfig):
    name: str = chosen_option("oracle", ORACLES, ORACLE_MEANING, "command")
    command: Optional[str] = param(None, "a shell command with {input} (the structure as extended XYZ) and {output} "
                                   "(the labelled structure, read by ASE), e.g. 'sbatch --wait run_dft.sh {input} "
                                   "{output}'")


@dataclass
class CampaignConfig:
    generations: int = param(6, "trainings at most (each followed by exploration, and labelling unless it is the "
                             "last)", None, Rule(positive, "a positive number of generations"))
    labels_budget: Optional[int] = param(None, "labels in all at most (null: no limit)", None,
                                         Rule(optional(positive), "a positive number of labels, or null"), unit="labels")
    converged: float = param(0.99, "stop when this fraction of a generation's explored frames is accurate", None,
                             Rule(within(0, 1, low_open=True), "a fraction in (0, 1]"))
    warm_start: bool = param(True, "each generation starts from the previous one's weights (else from new ones)")
    test_path: Any = param(None, "oracle-labelled structures the committee is tested on after every generation", None,
                           Rule(optional(path_or_paths), f"{STRUCTURES}, or null"))


@dataclass
class LearnConfig(TrainConfig):
    """``python -m aenet_exp learn``: an active-learning campaign. The train groups configure every generation's
    training (committee=deep by default); explore, select, oracle and campaign the loop."""

    resume: Optional[str] = param(None, "a campaign directory: continue it where it stopped, in the same MLflow run")
    explore: Any = MISSING  # one dataclass per option: OPTION_SCHEMAS
    select: TrustWindowConfig = MISSING
    oracle: Any = MISSING
    campaign: CampaignConfig = MISSING


# The groups with one dataclass per option (each option's YAML extends base_<option>), by group and option: the keys
# an option reads are the fields of its dataclass, so a key of another option is unknown under it. An option that
# reads only the keys every option reads (none, emt) is the group's base.
OPTION_SCHEMAS: dict[str, dict[str, type]] = {
    "optimizer": OPTIMIZER_SCHEMAS,
    "scheduler": {"none": SchedulerConfig, "cosine": CosineScheduleConfig, "plateau": PlateauScheduleConfig},
    "augment": {"none": AugmentConfig, "taylor": TaylorConfig},
    "committee": {"none": CommitteeConfig, "deep": DeepCommitteeConfig},
    "explore": {"md": LangevinConfig, "npt": NptConfig},
    "oracle": {"emt": OracleConfig, "xtb": XtbOracleConfig, "ase": AseOracleConfig, "command": CommandOracleConfig},
}
