"""The structured config of ``python -m aenet_exp train``: one dataclass per Hydra group.

Each group's YAML options under ``conf/<group>/`` are validated against the dataclass stored
under the same group here (see :mod:`aenet_exp.config.store`). The ænet
``TorchTrainingConfig`` name of every parameter is given in its field's comment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


@dataclass
class DataConfig:
    name: str = "custom"  # a label for the data set, logged with the run
    path: Any = MISSING  # file, directory, glob, tar archive, or a list of those
    testpercent: float = 10.0  # testpercent: % of structures held out for testing (0-100)
    max_energy: Optional[float] = None  # max_energy: drop structures above this eV/atom (target energy space)
    max_forces: Optional[float] = None  # max_forces: drop structures whose largest |force component| exceeds this eV/Å


@dataclass
class DescriptorConfig:
    species: Optional[list[str]] = None  # None: every species of the data, sorted alphabetically
    rad_order: int = 10  # highest radial Chebyshev order
    rad_cutoff: float = 6.0  # radial cutoff, Å
    ang_order: int = 4  # highest angular Chebyshev order
    ang_cutoff: float = 4.0  # angular cutoff, Å
    min_cutoff: float = 0.0  # pairs closer than this (Å) are ignored


@dataclass
class ModelConfig:
    hidden: list[int] = field(default_factory=lambda: [10, 10])  # hidden layer sizes, every species
    activations: list[str] = field(default_factory=lambda: ["tanh", "tanh"])  # per hidden layer
    per_species: dict[str, Any] = field(default_factory=dict)  # by symbol: {hidden: [...], activations: [...]}


@dataclass
class OptimizerConfig:
    name: str = MISSING  # method: adam | sgd | adamw
    batchsize: int = 32  # method.batchsize: structures per batch
    weight_decay: float = 0.0  # method.weight_decay (L2 for adam/sgd, decoupled for adamw)


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    mu: float = 1e-3  # Adam(mu): learning rate
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 1e-2


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    lr: float = 1e-2  # SGD(lr): learning rate
    momentum: float = 0.9


@dataclass
class ForceConfig:
    weight: float = 0.0  # force_weight α: loss = (1-α) RMSE(E/atom) + α RMSE(F)
    fraction: float = 1.0  # force_fraction: share of force-labelled structures supervised per epoch
    sampling: str = "random"  # force_sampling: random | fixed
    resample_each_epoch: bool = True  # force_resample_each_epoch
    min_structures_per_epoch: Optional[int] = 1  # force_min_structures_per_epoch
    scale_unbiased: bool = False  # force_scale_unbiased: multiply force RMSE by sqrt(1/fraction)
    epochs_per_window: int = 1  # epochs_per_force_window: epochs between re-samplings


@dataclass
class CachingConfig:
    features: bool = False  # cached_features (energy-only training)
    features_for_force: bool = False  # cached_features_for_force
    neighbors: bool = False  # cache_neighbors
    triplets: bool = False  # cache_triplets
    persist_dir: Optional[str] = None  # cache_persist_dir
    scope: str = "all"  # cache_scope: train | val | all


@dataclass
class DataLoaderConfig:
    num_workers: int = 0  # num_workers
    prefetch_factor: int = 2  # prefetch_factor (with workers)
    persistent_workers: bool = True  # persistent_workers (with workers)


@dataclass
class PrecisionConfig:
    dtype: str = "auto"  # precision: auto (float32 on CPU, float64 on GPU) | float32 | float64
    device: Optional[str] = None  # device: None = CUDA when present, else CPU
    memory_mode: str = "gpu"  # memory_mode: cpu | gpu | mixed


@dataclass
class NormalizationConfig:
    energy_target: str = "cohesive"  # energy_target: cohesive | total
    E_atomic: Any = None  # E_atomic: {symbol: eV}, or a structure file of isolated atoms
    features: bool = True  # normalize_features
    energy: bool = True  # normalize_energy
    feature_stats: Optional[str] = None  # feature_stats: .npz / .json file with 'mean' and 'std'
    E_shift: Optional[float] = None  # E_shift, eV/atom
    E_scaling: Optional[float] = None  # E_scaling, eV/atom


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///outputs/mlflow.db"  # MLflow tracking store
    experiment: str = "aenet_exp"
    run_name: Optional[str] = None
    save_energies: bool = False  # save_energies
    save_forces: bool = False  # save_forces
    timing: bool = False  # timing
    show_progress: bool = True  # show_progress (only on a terminal)
    show_batch_progress: bool = False  # show_batch_progress (only on a terminal)


@dataclass
class TrainConfig:
    iterations: int = 100  # iterations: epochs
    seed: int = 0  # split, initialisation and force sampling
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
