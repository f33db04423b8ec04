"""The structured config of ``python -m aenet_exp train``: one dataclass per Hydra group.

Each group's YAML options under ``conf/<group>/`` are validated against the dataclass stored
under the same group here (see :mod:`aenet_exp.config.store`). Every field carries its meaning
and, where it has one, the name of the ænet ``TorchTrainingConfig`` parameter it implements;
``docs/configuration.md`` is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


def param(default: Any, meaning: str, reference: str | None = None) -> Any:
    """A dataclass field with its documentation (lists and dicts are copied per instance)."""
    metadata = {"meaning": meaning, "reference": reference}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    name: str = param("custom", "a label for the data set, logged with the run")
    path: Any = param(MISSING, "structure file, directory, glob, tar archive, or a list of those")
    testpercent: float = param(10.0, "percentage of structures held out for testing (0–100), seeded split", "testpercent")
    max_energy: Optional[float] = param(
        None, "drop structures above this energy, eV/atom in the target energy space", "max_energy"
    )
    max_forces: Optional[float] = param(
        None, "drop structures whose largest force component exceeds this, eV/Å", "max_forces"
    )
    test_path: Any = param(
        None, "external test set (file, directory, glob, archive or list); with it, data.path is all for training "
        "and data.testpercent must be 0",
    )
    database: Optional[str] = param(
        None, "HDF5 structure database (.h5): built from data.path when absent, then read lazily",
        "HDF5StructureDataset.database_file",
    )
    in_memory_cache_size: int = param(
        2048, "structures kept per process in the database's LRU cache", "HDF5StructureDataset.in_memory_cache_size"
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
    rad_cutoff: float = param(6.0, "radial cutoff, Å")
    ang_order: int = param(4, "highest angular Chebyshev order")
    ang_cutoff: float = param(4.0, "angular cutoff, Å")
    min_cutoff: float = param(0.0, "pairs closer than this are ignored, Å (ænet's Fortran code: 0)")


@dataclass
class ModelConfig:
    hidden: list[int] = param([10, 10], "hidden layer sizes of every species' network")
    activations: list[str] = param(
        ["tanh", "tanh"], "activation after each hidden layer: linear, tanh, sigmoid, relu, mtanh, twist"
    )
    per_species: dict[str, Any] = param(
        {}, "networks by symbol, added with '+model.per_species.O={hidden: [..], activations: [..]}'"
    )


@dataclass
class OptimizerConfig:
    name: str = param(MISSING, "adam | adamw | sgd (chosen by the optimizer group)", "method")
    batchsize: int = param(32, "structures per batch", "method.batchsize")
    weight_decay: float = param(0.0, "L2 penalty (adam, sgd) or decoupled weight decay (adamw)", "method.weight_decay")


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = param("adam", "adam | adamw | sgd (chosen by the optimizer group)", "method")
    mu: float = param(1e-3, "learning rate", "Adam.mu")
    beta1: float = param(0.9, "first-moment decay", "Adam.beta1")
    beta2: float = param(0.999, "second-moment decay", "Adam.beta2")
    epsilon: float = param(1e-8, "numerical stability term", "Adam.epsilon")


@dataclass
class AdamWConfig(AdamConfig):
    name: str = param("adamw", "adam | adamw | sgd (chosen by the optimizer group)", "method")
    weight_decay: float = param(1e-2, "decoupled weight decay", "method.weight_decay")


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = param("sgd", "adam | adamw | sgd (chosen by the optimizer group)", "method")
    lr: float = param(1e-2, "learning rate", "SGD.lr")
    momentum: float = param(0.9, "momentum coefficient", "SGD.momentum")


@dataclass
class ForceConfig:
    weight: float = param(0.0, "α in loss = (1−α)·RMSE(E/atom) + α·RMSE(F), 0–1", "force_weight")
    fraction: float = param(
        1.0, "share of force-labelled training structures supervised on forces per epoch, (0, 1]", "force_fraction"
    )
    sampling: str = param("random", "random: re-drawn subsets | fixed: one subset for the whole run", "force_sampling")
    resample_each_epoch: bool = param(
        True, "with random sampling, re-draw every window (else draw once)", "force_resample_each_epoch"
    )
    min_structures_per_epoch: Optional[int] = param(
        1, "at least this many structures supervised on forces per epoch", "force_min_structures_per_epoch"
    )
    scale_unbiased: bool = param(False, "multiply the force RMSE in the loss by sqrt(1/fraction)", "force_scale_unbiased")
    epochs_per_window: int = param(1, "epochs between re-draws of the force subset", "epochs_per_force_window")


@dataclass
class CachingConfig:
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
    scope: str = param("all", "which split is cached: train | val | all", "cache_scope")


@dataclass
class SchedulerConfig:
    name: str = param("none", "learning-rate schedule per epoch: none | plateau | cosine (chosen by the scheduler group)")
    warmup_epochs: int = param(0, "epochs of linear warm-up from warmup_start_factor × lr to lr, before the schedule")
    warmup_start_factor: float = param(0.1, "learning-rate factor at the first warm-up epoch, (0, 1]")
    min_lr: float = param(0.0, "lowest learning rate the schedule reaches")
    factor: float = param(0.5, "plateau: multiply the learning rate by this when the metric stalls, (0, 1)")
    patience: int = param(10, "plateau: epochs without improvement before reducing")
    threshold: float = param(1e-4, "plateau: relative improvement that counts")
    metric: str = param("test/loss", "plateau: the metric watched (test/* needs a test set; else train/*)")


@dataclass
class EarlyStoppingConfig:
    patience: Optional[int] = param(
        None, "stop after this many epochs without improvement of the metric and keep the best model (null: off)"
    )
    metric: str = param("test/loss", "the metric watched, lower is better (test/* needs a test set; else train/*)")
    min_delta: float = param(0.0, "smallest decrease that counts as an improvement")


@dataclass
class EmaConfig:
    decay: Optional[float] = param(
        None, "exponential moving average of the weights, updated after every step; evaluation, checkpoints' best "
        "model and the saved potential use the averaged weights (null: off; typical 0.99–0.999)",
    )


@dataclass
class DataLoaderConfig:
    num_workers: int = param(0, "worker processes building neighbour lists and triplets", "num_workers")
    prefetch_factor: int = param(2, "batches prepared ahead per worker (with workers)", "prefetch_factor")
    persistent_workers: bool = param(True, "keep workers (and their caches) between epochs", "persistent_workers")


@dataclass
class PrecisionConfig:
    dtype: str = param("auto", "auto (float32 on CPU, float64 on GPU) | float32 | float64", "precision")
    device: Optional[str] = param(None, "cpu | cuda | cuda:N; null = CUDA when present, else CPU", "device")
    memory_mode: str = param(
        "gpu", "where energy targets and cached features live — cpu: host, moved per batch | gpu: the device, "
        "moved once | mixed: features on the device, targets on the host (graphs are built on the host per batch)",
        "memory_mode",
    )


@dataclass
class NormalizationConfig:
    energy_target: str = param("cohesive", "cohesive (minus E_atomic) | total energies", "energy_target")
    E_atomic: Any = param(None, "{symbol: eV} or a structure file of isolated atoms", "E_atomic")
    features: bool = param(True, "standardise features with training-set mean and std", "normalize_features")
    energy: bool = param(True, "shift and scale per-atom energies onto [−1, 1]", "normalize_energy")
    feature_stats: Optional[str] = param(None, ".npz or .json file with 'mean' and 'std' arrays", "feature_stats")
    E_shift: Optional[float] = param(None, "per-atom energy shift, eV/atom (null: from the training set)", "E_shift")
    E_scaling: Optional[float] = param(None, "per-atom energy scale, eV/atom (null: from the training set)", "E_scaling")


@dataclass
class TrackingConfig:
    enabled: bool = param(True, "record the run in MLflow")
    uri: str = param("sqlite:///outputs/mlflow.db", "MLflow tracking store (relative to the working directory)")
    experiment: str = param("aenet_exp", "MLflow experiment name")
    run_name: Optional[str] = param(None, "MLflow run name (null: generated)")
    log_model: bool = param(
        True, "log the potential as the MLflow pyfunc model runs:/<run_id>/model (predict: structures → energies, eV)"
    )
    register: Optional[str] = param(
        None, "register the logged model under this name in the MLflow model registry, a new version per run (null: no)"
    )
    save_energies: bool = param(False, "write energies.{train,test}.predicted", "save_energies")
    save_forces: bool = param(False, "write forces.{train,test}.predicted", "save_forces")
    timing: bool = param(False, "time/* metrics per phase and a summary at the end", "timing")
    show_progress: bool = param(True, "epoch progress bar (on a terminal)", "show_progress")
    show_batch_progress: bool = param(False, "batch progress bar (on a terminal)", "show_batch_progress")


@dataclass
class CheckpointConfig:
    every: int = param(10, "write checkpoint.pt every this many epochs (and at the end); 0: only at the end")


@dataclass
class TrainConfig:
    iterations: int = param(100, "training epochs", "iterations")
    seed: int = param(0, "seed of the split, initialisation, shuffling and force sampling")
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
    )
    distributed: str = param(
        "none",
        "none: one process | ddp: data-parallel over the processes torchrun starts (gloo on CPU, nccl on CUDA, "
        "cuda:LOCAL_RANK per process); each batch is shared out by atoms, gradients summed, rank 0 records",
    )
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    scheduler: SchedulerConfig = MISSING
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
