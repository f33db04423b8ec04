"""``train``'s composition: each config group becomes one object here, and :mod:`aenet_exp.training.run` sequences
them. Nothing below this module reads the config.

=================  ======================================================================
group              object
=================  ======================================================================
``data``           :class:`~aenet_exp.training.dataset.PreparedData` (read, filtered, split)
``augment``        :class:`~aenet_exp.data.taylor.TaylorExpansion` (children of the training split)
``descriptor``,    :class:`~aenet_exp.model.potential.Potential` (or the checkpoint's, or
``model``          ``init_from``'s)
``force``          :class:`~aenet_exp.training.supervision.ForceSupervision` (subset, loss)
``caching``,       :class:`~aenet_exp.training.features.FeatureSource` (graphs, kept
``dataloader``     features and Jacobians, on the ``precision.memory_mode`` device)
``optimizer``      :func:`~aenet_exp.training.optim.plan_optimizer` (registry by option; with its step strategy)
``scheduler``      :class:`~aenet_exp.training.schedule.EpochSchedule` (registry by option)
``sampling``       :class:`~aenet_exp.training.sampling.EpochSampling` (the structures of each epoch)
``ema``            :class:`~aenet_exp.training.schedule.WeightAverage`
``committee``      the potential's members and their seeds, :class:`~aenet_exp.training.bootstrap.MemberWeights`;
                   the calibration split
``normalization``  :class:`~aenet_exp.training.normalization.NormalizationSettings`
``early_stopping`` :class:`~aenet_exp.training.callbacks.EarlyStopping`
``checkpoint``     :class:`~aenet_exp.training.callbacks.Checkpointer`
``tracking``       progress bar and timing callbacks, :class:`~aenet_exp.training.run.Outputs`; the MLflow
                   observer in :mod:`aenet_exp.build.train`
=================  ======================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from aenet_exp.config.validation import check_watched_metrics
from aenet_exp.data.taylor import TaylorExpansion
from aenet_exp.descriptor.chebyshev import ChebyshevDescriptor
from aenet_exp.errors import ConfigError
from aenet_exp.model.locate import load_potential
from aenet_exp.model.potential import Potential
from aenet_exp.rundir import RunDirectory
from aenet_exp.training import run as sequence
from aenet_exp.training.batching import plan_batches
from aenet_exp.training.bootstrap import MemberWeights
from aenet_exp.training.callbacks import Checkpointer, Divergence, EarlyStopping, History, ProgressBar, TimingSummary
from aenet_exp.training.checkpoint import load_checkpoint
from aenet_exp.training.dataset import PreparedData, data_label, prepare_data
from aenet_exp.training.distributed import Ranks, joined
from aenet_exp.training.events import Callback
from aenet_exp.training.features import FeatureSource
from aenet_exp.interrupts import terminated_as_interrupt
from aenet_exp.training.memory import Need, check_memory, jacobian_bytes, kalman_need, machine_memory, needs
from aenet_exp.training.normalization import NormalizationSettings
from aenet_exp.training.optim import plan_optimizer
from aenet_exp.training.precision import resolve_device, resolve_dtype, storage_devices
from aenet_exp.training.sampling import EpochSampling
from aenet_exp.training.schedule import EpochSchedule, WeightAverage
from aenet_exp.training.supervision import ForceSupervision
from aenet_exp.training.timing import PhaseTimer
from aenet_exp.training.trainer import Runtime, Trainer, TrainingData

# Independent random streams drawn from ``seed``: the split and the initial weights use ``seed``
# itself, the force subsets, the batch shuffling and (without augment.seed) the Taylor children
# generators seeded with these offsets.
FORCE_SAMPLING_SEED_OFFSET = 1
SHUFFLE_SEED_OFFSET = 2
AUGMENT_SEED_OFFSET = 3
CALIBRATION_SEED_OFFSET = 4


def section(cfg: DictConfig, group: str) -> dict[str, Any]:
    """The keys of config ``group`` as plain keyword arguments (interpolations resolved)."""
    return OmegaConf.to_container(cfg[group], resolve=True)


def run_training(cfg: DictConfig, output_dir: str | Path, observers: Sequence[Callback] = ()) -> dict[str, float]:
    """Train a potential as ``cfg`` says; returns the final metrics.

    With ``cfg.resume`` the run continues from the checkpoint in that directory, with the
    configuration stored there (``iterations`` and ``distributed`` from ``cfg``), writing to that
    directory. With ``distributed=ddp`` (under torchrun) this process joins the others; only
    rank 0 tells ``observers`` and writes files, and only its metrics include ``final/*``.
    User errors (:class:`aenet_exp.errors.UserError`) are raised before any observer hears of the run.
    """
    checkpoint = None
    if cfg.resume:
        output_dir = Path(cfg.resume)
        checkpoint = load_checkpoint(output_dir)
        cfg = resumed_config(checkpoint["config"], cfg.iterations, cfg.distributed)
    with terminated_as_interrupt(), joined(cfg.distributed == "ddp", resolve_device(cfg.precision.device)) as (ranks, device):
        owned = RunDirectory.claim(Path(output_dir), resuming=checkpoint is not None) if ranks.main else None
        try:
            return train_here(cfg, Path(output_dir), observers if ranks.main else (), checkpoint, ranks, device)
        finally:
            if owned is not None:
                owned.release()


def train_here(
    cfg: DictConfig, output_dir: Path, observers: Sequence[Callback], checkpoint: dict | None, ranks: Ranks,
    device: torch.device,
) -> dict[str, float]:
    """Build every part of the training in this process, one of ``ranks``, on ``device``, and run it."""
    name_the_data(cfg)
    dtype = resolve_dtype(cfg.precision.dtype, device)
    data = prepared_data(cfg)
    check_watched_metrics(section(cfg, "scheduler"), section(cfg, "early_stopping"), cfg.force.weight, len(data.test) > 0)
    supervision = ForceSupervision(
        **section(cfg, "force"), candidates=data.train[data.columns.has_forces[data.train]],
        seed=cfg.seed + FORCE_SAMPLING_SEED_OFFSET,
    )
    check_memory(memory_needs(cfg, data, dtype))
    torch.manual_seed(cfg.seed)
    potential = initial_potential(cfg, data.species, dtype, checkpoint).to(device)
    trainer = build_trainer(cfg, data, potential, supervision, device, ranks)
    try:
        history, stopping = History(), build_early_stopping(cfg, trainer, ranks)
        first_epoch = checkpoint["epoch"] if checkpoint is not None else 0
        callbacks = [Divergence(), history, *([stopping] if stopping is not None else [])]
        if ranks.main:
            callbacks += main_callbacks(cfg, trainer, history, stopping, output_dir, observers, first_epoch)
        job = sequence.Training(
            data=data, trainer=trainer, normalization=normalization_settings(cfg),
            fresh=checkpoint is None and not cfg.init_from, checkpoint=checkpoint, first_epoch=first_epoch,
            iterations=cfg.iterations, history=history, stopping=stopping, callbacks=callbacks,
            config=OmegaConf.to_container(cfg, resolve=True),
            facts={"precision.resolved_device": str(device), "precision.resolved_dtype": str(dtype).removeprefix("torch."),
                   "distributed.world_size": ranks.size},
            outputs=sequence.Outputs(output_dir, OmegaConf.to_yaml(cfg, resolve=True), cfg.tracking.save_energies,
                                     cfg.tracking.save_forces),
        )
        return sequence.train(job)
    finally:
        trainer.source.close()


def resumed_config(stored_yaml: str, iterations: int, launch: str) -> DictConfig:
    """The configuration a checkpoint was written with, to run up to ``iterations`` epochs as this
    command is launched (``distributed``: ``launch``)."""
    cfg = OmegaConf.create(stored_yaml)
    cfg.iterations = iterations
    cfg.distributed = launch
    cfg.resume = None
    return cfg


# ---------------------------------------------------------------- data, augment, committee's split


def name_the_data(cfg: DictConfig) -> None:
    """``data.name`` not given: the data's label, from its path (in place)."""
    if cfg.data.name is None:
        cfg.data.name = data_label(section(cfg, "data")["path"], cfg.data.database)


def prepared_data(cfg: DictConfig) -> PreparedData:
    """The structures of ``cfg.data`` read, filtered and split, with the references in force."""
    keys = section(cfg, "data")
    for described_elsewhere in ("name", "E_atomic"):  # a label, and references taken with normalization's
        keys.pop(described_elsewhere)
    species = cfg.descriptor.species
    return prepare_data(
        **keys, references=reference_energies(cfg), energy_target=cfg.normalization.energy_target,
        fixed_references=section(cfg, "normalization")["E_atomic_fixed"],
        species=list(species) if species is not None else None, seed=cfg.seed, show_progress=cfg.tracking.show_progress,
        augmentation=taylor_expansion(cfg),
        calibration_percent=cfg.committee.calibration_percent if calibrates(cfg) else 0.0,
        calibration_seed=cfg.seed + CALIBRATION_SEED_OFFSET,
    )


def reference_energies(cfg: DictConfig) -> Any:
    """The reference energies in force: ``normalization.E_atomic`` when given, else the data's ``data.E_atomic``."""
    given = cfg.normalization.E_atomic if cfg.normalization.E_atomic is not None else cfg.data.E_atomic
    return OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else given


def taylor_expansion(cfg: DictConfig) -> TaylorExpansion | None:
    """The Taylor children's settings of ``cfg.augment`` (None for ``augment=none``); ``augment.seed`` null: the
    run's ``seed`` + :data:`AUGMENT_SEED_OFFSET`."""
    keys = section(cfg, "augment")
    if keys.pop("name") == "none":
        return None
    seed = keys.pop("seed")
    return TaylorExpansion(**keys, seed=cfg.seed + AUGMENT_SEED_OFFSET if seed is None else seed)


def calibrates(cfg: DictConfig) -> bool:
    """Whether a committee's σ is calibrated on structures held out of training (``committee.calibrate``)."""
    return cfg.committee.name != "none" and cfg.committee.calibrate


def member_seeds(cfg: DictConfig) -> list[int]:
    """Each committee member's initialisation seed: ``committee.seeds``, else ``seed``, ``seed + 1``, ...; a single
    potential (``committee=none``): ``seed``."""
    committee = cfg.committee
    if committee.name == "none":
        return [cfg.seed]
    if committee.seeds is not None:
        return [int(s) for s in committee.seeds]
    return [cfg.seed + k for k in range(committee.members)]


# ---------------------------------------------------------------- descriptor, model


def build_potential(cfg: DictConfig, species: Sequence[str], dtype: torch.dtype) -> Potential:
    """The descriptor of ``cfg.descriptor`` and networks of ``cfg.model`` for ``species``."""
    descriptor = ChebyshevDescriptor(**{**section(cfg, "descriptor"), "species": list(species)}, dtype=dtype)
    unknown = sorted(set(section(cfg, "model")["per_species"]) - set(species))
    if unknown:
        raise ConfigError("model.per_species", f"species {unknown} are not in the descriptor's species {list(species)}")
    seeds = member_seeds(cfg)
    return Potential(descriptor, **network_layout(cfg, species), members=len(seeds), seeds=seeds)


def network_layout(cfg: DictConfig, species: Sequence[str]) -> dict[str, dict[str, list]]:
    """``hidden`` and ``activations`` by species: ``model``'s, or ``model.per_species.<symbol>``'s."""
    model = section(cfg, "model")
    nets = {s: model["per_species"].get(s, model) for s in species}
    return {key: {s: net[key] for s, net in nets.items()} for key in ("hidden", "activations")}


def initial_potential(cfg: DictConfig, species: Sequence[str], dtype: torch.dtype, checkpoint: dict | None) -> Potential:
    """A new potential, the checkpoint's (resume), or a trained one to fine-tune (``init_from``)."""
    if checkpoint is not None:
        potential = Potential.from_settings(checkpoint["settings"])
        potential.load_state_dict(checkpoint["model"])
        return potential
    if cfg.init_from:
        potential = load_potential(cfg.init_from, cfg.tracking.uri, key="init_from").astype(dtype)
        missing = sorted(set(species) - set(potential.species))
        if missing:
            raise ConfigError("init_from", f"the model has no network for species {missing} of the data")
        members = len(member_seeds(cfg))
        if potential.members != members:
            raise ConfigError("init_from", f"the model has {potential.members} committee member(s), this run trains "
                              f"{members} (committee.members); start from a model with as many")
        differing = layout_differences(cfg, potential)
        if differing:
            raise ConfigError("init_from", f"the model's descriptor and networks are what trains, and this run's config "
                              f"differs: {'; '.join(differing)}; set these keys to the model's values")
        return potential
    return build_potential(cfg, species, dtype)


def layout_differences(cfg: DictConfig, potential: Potential) -> list[str]:
    """The descriptor and network keys in which ``cfg`` differs from ``potential``: ``key is <cfg's> here, <the
    potential's> in the model``."""
    ours = {**section(cfg, "descriptor"), **network_layout(cfg, potential.species)}
    settings = potential.settings()
    theirs = {**settings["descriptor"], "hidden": settings["hidden"], "activations": settings["activations"]}
    return [f"{'model' if key in ('hidden', 'activations') else 'descriptor'}.{key} is {ours[key]} here, {value} in the "
            "model" for key, value in theirs.items() if key != "species" and ours[key] != value]


def memory_needs(cfg: DictConfig, data: PreparedData, dtype: torch.dtype) -> list[Need]:
    """The memory this configuration's descriptor, batches, networks (every committee member's) and Kalman covariance
    need, from the data's density."""
    descriptor = ChebyshevDescriptor(**{**section(cfg, "descriptor"), "species": list(data.species)}, dtype=dtype)
    layouts = network_layout(cfg, data.species)["hidden"]
    atoms_per_batch = min(cfg.optimizer.batchsize, len(data.train)) * float(data.columns.n_atoms[data.train].mean())
    found = needs(
        data.structures, atoms_per_batch, descriptor.n_features, descriptor.rad_order, descriptor.rad_cutoff,
        descriptor.ang_order, descriptor.ang_cutoff, layouts, torch.finfo(dtype).bits // 8, cfg.force.weight > 0,
        members=cfg.committee.members if cfg.committee.name != "none" else 1,
    )
    if cfg.optimizer.name == "ekf":
        found.append(kalman_need(descriptor.n_features, layouts, cfg.optimizer.blocks))
    return found


# ---------------------------------------------------------------- the trainer and its parts


def jacobians_fit(data: PreparedData, potential: Potential) -> bool:
    """Whether the feature Jacobians of every structure with forces fit in a quarter of the machine's memory."""
    with_forces = np.flatnonzero(data.columns.has_forces)
    descriptor = potential.descriptor
    size = jacobian_bytes(data.structures, with_forces, descriptor.cutoff, descriptor.n_features,
                          torch.finfo(descriptor.dtype).bits // 8)
    return size < machine_memory() / 4


def build_trainer(
    cfg: DictConfig, data: PreparedData, potential: Potential, supervision: ForceSupervision, device: torch.device,
    ranks: Ranks,
) -> Trainer:
    """The trainer and what it is made of: feature source, optimiser, schedule, weight average."""
    label_device, feature_device = storage_devices(cfg.precision.memory_mode, device)
    timer = PhaseTimer(cfg.tracking.timing, device)
    source = FeatureSource(
        **section(cfg, "caching"), structures=data.structures, descriptor=potential.descriptor,
        splits={"train": data.train, "test": data.test}, storage=feature_device, device=device,
        loader=section(cfg, "dataloader"), timer=timer, force_training=supervision.active,
        jacobians_fit=jacobians_fit(data, potential) if supervision.active else False,
    )
    plan = plan_optimizer(potential.networks.nets, **section(cfg, "optimizer"))
    schedule = EpochSchedule(plan.optimizer, cfg.iterations, **section(cfg, "scheduler"))
    average = WeightAverage(potential, **section(cfg, "ema")) if cfg.ema.decay is not None else None
    per_atom = data.columns.target_energy_per_atom(data.atomic_energies, cfg.normalization.energy_target == "cohesive")
    sampling = EpochSampling(**section(cfg, "sampling"), train=data.train, per_atom=per_atom,
                             rng=np.random.default_rng(cfg.seed + SHUFFLE_SEED_OFFSET), ranks=ranks)
    bootstrap = cfg.committee.name != "none" and cfg.committee.bootstrap
    member_weights = MemberWeights(data.train, data.columns.n_atoms, member_seeds(cfg), device, potential.descriptor.dtype) \
        if bootstrap else None
    return Trainer(
        potential, TrainingData(data.columns, data.train, data.test), source, supervision, sampling, plan, schedule,
        Runtime(device, label_device, timer, ranks), average=average, member_weights=member_weights,
    )


def normalization_settings(cfg: DictConfig) -> NormalizationSettings:
    """``normalization.*`` as what fitting a fresh potential's normalisation takes."""
    norm = cfg.normalization
    return NormalizationSettings(norm.energy_target, norm.features, norm.energy, norm.feature_stats, norm.E_shift,
                                 norm.E_scaling)


# ---------------------------------------------------------------- side jobs: early stopping, checkpoints, progress


def build_early_stopping(cfg: DictConfig, trainer: Trainer, ranks: Ranks) -> EarlyStopping | None:
    """``early_stopping.*`` on every rank (all stop together); rank 0 says why."""
    if cfg.early_stopping.patience is None:
        return None
    return EarlyStopping(trainer.kept_weights, **section(cfg, "early_stopping"), announce=ranks.main)


def main_callbacks(
    cfg: DictConfig, trainer: Trainer, history: History, stopping: EarlyStopping | None, output_dir: Path,
    observers: Sequence[Callback], first_epoch: int,
) -> list[Callback]:
    """Rank 0's side jobs, in order: the observers (MLflow: an epoch is logged before it is checkpointed), the
    checkpoint, the progress bars, the timing table."""
    parts = {"trainer": trainer, "early_stopping": stopping, "history": history}
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    batches = len(plan_batches(trainer.train_idx, cfg.optimizer.batchsize, None))
    show = cfg.tracking
    callbacks = [
        *observers,
        Checkpointer(output_dir, cfg.checkpoint.every, config_yaml, trainer.potential, parts, keep=cfg.checkpoint.keep,
                     watched=best_metric(cfg, trainer), evaluated_weights=trainer.kept_weights),
        ProgressBar(cfg.iterations, first_epoch, batches, show.show_progress, show.show_batch_progress),
    ]
    return callbacks + ([TimingSummary(cfg.iterations)] if show.timing else [])


def best_metric(cfg: DictConfig, trainer: Trainer) -> str:
    """What the best checkpoint is chosen by: ``early_stopping.metric``; ``train/loss`` without a test set."""
    metric = cfg.early_stopping.metric
    return metric if len(trainer.test_idx) or not metric.startswith("test/") else "train/loss"
