"""``training.run(cfg)``: data -> potential -> epochs -> saved model, told to observers as it goes."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from aenet_exp.config.validation import ConfigError
from aenet_exp.descriptor import ChebyshevDescriptor
from aenet_exp.model import Potential
from aenet_exp.training.checkpoint import load_checkpoint, save_checkpoint
from aenet_exp.training.dataset import PreparedData, prepare_data
from aenet_exp.training.distributed import Ranks, joined
from aenet_exp.training.events import Observer, TrainingResult
from aenet_exp.training.outputs import write_atomically, write_predictions
from aenet_exp.training.schedule import EarlyStopping
from aenet_exp.training.targets import energy_normalization, load_feature_stats
from aenet_exp.training.trainer import Trainer, metrics_of

MODEL_FILE = "potential.pt"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stops and is marked FAILED."""


def resolve_device(requested: str | None) -> torch.device:
    """``precision.device``: as given, else CUDA when present, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``precision.dtype``; ``auto`` is float32 on CPU and float64 on GPU (the reference's rule)."""
    if name == "auto":
        return torch.float64 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def storage_devices(memory_mode: str, device: torch.device) -> tuple[torch.device, torch.device]:
    """Where ``(energy targets, cached features)`` live for ``precision.memory_mode``.

    ``cpu``: host, moved per batch; ``gpu``: the training device, moved once; ``mixed``:
    features on the device, targets on the host. Graphs are built on the host (in DataLoader
    workers) and moved per batch in every mode.
    """
    host = torch.device("cpu")
    return {"cpu": (host, host), "gpu": (device, device), "mixed": (host, device)}[memory_mode]


def build_potential(cfg: DictConfig, species: Sequence[str], dtype: torch.dtype) -> Potential:
    """The descriptor of ``cfg.descriptor`` and networks of ``cfg.model`` for ``species``."""
    d = cfg.descriptor
    descriptor = ChebyshevDescriptor(
        species, d.rad_order, d.rad_cutoff, d.ang_order, d.ang_cutoff, min_cutoff=d.min_cutoff, dtype=dtype
    )
    per_species = cfg.model.per_species
    unknown = sorted(set(per_species) - set(species))
    if unknown:
        raise ConfigError("model.per_species", f"species {unknown} are not in the descriptor's species {list(species)}")
    hidden = {s: list(per_species[s].hidden if s in per_species else cfg.model.hidden) for s in species}
    activations = {s: list(per_species[s].activations if s in per_species else cfg.model.activations) for s in species}
    return Potential(descriptor, hidden, activations)


def normalize(trainer: Trainer, data: PreparedData, cfg: DictConfig) -> dict[str, float]:
    """Fit (or take the given) feature and energy normalisation on the training split."""
    potential, norm = trainer.potential, cfg.normalization
    cohesive = norm.energy_target == "cohesive"
    per_atom = data.columns.take(data.train).target_energy_per_atom(data.atomic_energies, cohesive)
    shift, scale = energy_normalization(per_atom, norm.E_shift, norm.E_scaling, norm.energy)
    potential.set_normalization(
        energy_shift=shift, energy_scale=scale, atomic_energies=data.atomic_energies if cohesive else None
    )
    if norm.features:
        n = potential.descriptor.n_features
        mean, std = load_feature_stats(norm.feature_stats, n) if norm.feature_stats else trainer.feature_statistics()
        potential.set_normalization(feature_mean=torch.as_tensor(mean), feature_std=torch.as_tensor(std))
    return {"normalization.fitted_E_shift": shift, "normalization.fitted_E_scaling": scale}


BAR_FIELDS = {  # metric -> (label, factor to the shown unit)
    "train/loss": ("loss", 1.0),
    "train/energy_rmse": ("E_train meV/at", 1000.0),
    "test/energy_rmse": ("E_test meV/at", 1000.0),
    "train/force_rmse": ("F_train eV/Å", 1.0),
    "test/force_rmse": ("F_test eV/Å", 1.0),
}


def bar_summary(metrics: dict[str, float]) -> dict[str, str]:
    """The live loss and errors shown beside the epoch bar."""
    return {label: f"{metrics[k] * factor:.4g}" for k, (label, factor) in BAR_FIELDS.items() if k in metrics}


def progress_bar(enabled: bool, **kwargs):
    """A tqdm bar on a terminal; nothing when disabled or when output is not a terminal."""
    return tqdm(**kwargs) if enabled and sys.stderr.isatty() else None


def run(cfg: DictConfig, output_dir: str | Path, observers: Sequence[Observer] = ()) -> dict[str, float]:
    """Train a potential as ``cfg`` says; returns the final metrics.

    With ``cfg.resume`` the run continues from the checkpoint in that directory, with the
    configuration stored there (``iterations`` and ``distributed`` from ``cfg``), writing to that
    directory. With ``distributed=ddp`` (under torchrun) this process joins the others; only
    rank 0 tells ``observers`` and writes files, and only its metrics include ``final/*``.
    User errors (ConfigError, DataError) are raised before any observer hears of the run.
    """
    checkpoint = None
    if cfg.resume:
        output_dir = Path(cfg.resume)
        checkpoint = load_checkpoint(output_dir)
        cfg = resumed_config(checkpoint["config"], cfg.iterations, cfg.distributed)
    with joined(cfg.distributed == "ddp", resolve_device(cfg.precision.device)) as (ranks, device):
        return run_process(cfg, Path(output_dir), observers if ranks.main else (), checkpoint, ranks, device)


def run_process(
    cfg: DictConfig, output_dir: Path, observers: Sequence[Observer], checkpoint: dict | None, ranks: Ranks,
    device: torch.device,
) -> dict[str, float]:
    """:func:`run` in this process, one of ``ranks``, training on ``device``."""
    if ranks.main:
        ensure_writable(output_dir)
    dtype = resolve_dtype(cfg.precision.dtype, device)
    data = prepare_data(cfg)
    if cfg.force.weight > 0 and not data.columns.has_forces[data.train].any():
        raise ConfigError("force.weight", f"is {cfg.force.weight}, but no training structure has forces")
    check_watched_metrics(cfg, len(data.test) > 0)
    torch.manual_seed(cfg.seed)
    potential = initial_potential(cfg, data.species, dtype, checkpoint).to(device)
    storage = storage_devices(cfg.precision.memory_mode, device)
    trainer = Trainer(potential, data, cfg, device, storage, ranks)
    fitted = normalize(trainer, data, cfg) if checkpoint is None and not cfg.init_from else {}
    ranks.broadcast(potential)  # rank 0's weights and normalisation everywhere (seeded alike, now bit for bit)
    trainer.set_targets(data.atomic_energies if cfg.normalization.energy_target == "cohesive" else None)
    trainer.timer.take()  # the statistics pass is not an epoch
    if checkpoint is not None:
        trainer.load_state(checkpoint["trainer"])
    facts = {
        **data.facts(), **fitted, "precision.resolved_device": str(device),
        "precision.resolved_dtype": str(dtype).removeprefix("torch."), "distributed.world_size": ranks.size,
    }

    config = OmegaConf.to_container(cfg, resolve=True)
    for observer in observers:
        observer.on_start(config, facts)
    try:
        result = fit(trainer, cfg, output_dir, observers, checkpoint)
        if ranks.main:
            finish(trainer, data, cfg, result)
        for observer in observers:
            observer.on_end(result)
    except BaseException as error:
        for observer in observers:
            observer.on_failure(error)
        raise
    return result.metrics


def check_watched_metrics(cfg: DictConfig, has_test_set: bool) -> None:
    """The metrics the schedule and early stopping watch must be ones this run produces."""
    watched = {"scheduler.metric": cfg.scheduler.name == "plateau", "early_stopping.metric": cfg.early_stopping.patience is not None}
    for key, active in watched.items():
        metric = OmegaConf.select(cfg, key)
        if not active:
            continue
        if metric.startswith("test/") and not has_test_set:
            raise ConfigError(key, f"watches {metric}, but this run has no test structures; use a train/ metric or a test set")
        if "/force" in metric and cfg.force.weight == 0:
            raise ConfigError(key, f"watches {metric}, but forces are not trained (force.weight=0)")


def ensure_writable(directory: Path) -> None:
    """Fail before training when the output directory cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise ConfigError("hydra.run.dir", f"cannot write the output directory {directory}: {error.strerror}") from None


def resumed_config(stored_yaml: str, iterations: int, launch: str) -> DictConfig:
    """The configuration a checkpoint was written with, to run up to ``iterations`` epochs as this
    command is launched (``distributed``: ``launch``)."""
    cfg = OmegaConf.create(stored_yaml)
    cfg.iterations = iterations
    cfg.distributed = launch
    cfg.resume = None
    return cfg


def initial_potential(cfg: DictConfig, species: Sequence[str], dtype: torch.dtype, checkpoint: dict | None) -> Potential:
    """A new potential, the checkpoint's (resume), or a trained one to fine-tune (``init_from``)."""
    if checkpoint is not None:
        potential = Potential.from_settings(checkpoint["settings"])
        potential.load_state_dict(checkpoint["model"])
        return potential
    if cfg.init_from:
        from aenet_exp.calculator import model_path

        potential = Potential.load(model_path(cfg.init_from)).astype(dtype)
        missing = sorted(set(species) - set(potential.species))
        if missing:
            raise ConfigError("init_from", f"the model has no network for species {missing} of the data")
        return potential
    return build_potential(cfg, species, dtype)


def write_checkpoint(
    trainer: Trainer, cfg: DictConfig, output_dir: Path, epochs_done: int, history: dict, stopping: EarlyStopping | None
) -> None:
    save_checkpoint(
        output_dir,
        {
            "epoch": epochs_done,
            "config": OmegaConf.to_yaml(cfg, resolve=True),
            "settings": trainer.potential.settings(),
            "model": trainer.potential.state_dict(),
            "trainer": trainer.state(),
            "early_stopping": stopping.state_dict() if stopping is not None else None,
            "history": history,
        },
    )


def fit(
    trainer: Trainer, cfg: DictConfig, output_dir: Path, observers: Sequence[Observer], checkpoint: dict | None = None
) -> TrainingResult:
    """Run epochs up to ``cfg.iterations`` (from the checkpoint's epoch when resuming), reporting each."""
    history: dict[str, list[float]] = {k: list(v) for k, v in (checkpoint or {}).get("history", {}).items()}
    first = checkpoint["epoch"] if checkpoint else 0
    totals: dict[str, float] = {}
    show = cfg.tracking
    main = trainer.ranks.main
    epochs = progress_bar(show.show_progress and main, total=cfg.iterations, initial=first, desc="epochs", unit="epoch")
    batches_per_epoch = -(-len(trainer.train_idx) // cfg.optimizer.batchsize)
    metrics: dict[str, float] = {k: v[-1] for k, v in history.items()}
    stopping = EarlyStopping(cfg.early_stopping) if cfg.early_stopping.patience is not None else None
    if stopping is not None and checkpoint is not None:
        stopping.load_state_dict(checkpoint["early_stopping"])
    for epoch in range(first, cfg.iterations):
        start = time.perf_counter()
        batch_bar = progress_bar(
            show.show_batch_progress and main, total=batches_per_epoch, desc=f"epoch {epoch + 1}", leave=False
        )
        metrics = trainer.train_epoch(epoch, batch_bar)
        if batch_bar is not None:
            batch_bar.close()
        phases = trainer.timer.take()
        evaluation = time.perf_counter()
        metrics.update(trainer.test_metrics())
        trainer.timer.take()  # evaluation is timed as a whole, apart from the training phases
        metrics["time/eval_s"] = time.perf_counter() - evaluation
        if not np.isfinite(metrics["train/loss"]):
            raise TrainingDiverged(
                f"training diverged at epoch {epoch + 1}: the loss is {metrics['train/loss']}; "
                "lower the learning rate (optimizer.mu / optimizer.lr) or check the data"
            )
        metrics["time/epoch_s"] = time.perf_counter() - start
        if show.timing:
            for phase, seconds in phases.items():
                metrics[f"time/{phase}_s"] = seconds
                totals[phase] = totals.get(phase, 0.0) + seconds
        for key, value in metrics.items():
            history.setdefault(key, []).append(value)
        trainer.schedule.step(metrics)
        stop = stopping is not None and stopping.update(epoch + 1, metrics, trainer.kept_weights())
        every = cfg.checkpoint.every
        if main and ((every and (epoch + 1) % every == 0) or epoch + 1 == cfg.iterations or stop):
            write_checkpoint(trainer, cfg, output_dir, epoch + 1, history, stopping)
        for observer in observers:
            observer.on_epoch_end(epoch, metrics)
        if epochs is not None:
            epochs.update(1)
            epochs.set_postfix(bar_summary(metrics), refresh=False)
        if stop:
            if main:
                print(f"early stopping after epoch {epoch + 1}: {stopping.metric} "
                      f"last improved at epoch {stopping.best_epoch}")
            break
    if epochs is not None:
        epochs.close()
    final = dict(metrics)
    if stopping is not None and stopping.best_weights is not None:
        trainer.potential.load_state_dict(stopping.best_weights)
        final["final/best_epoch"] = stopping.best_epoch
    elif trainer.average is not None:
        trainer.potential.load_state_dict(trainer.average.weights())
    return TrainingResult(history, final, {}, output_dir, totals)


def finish(trainer: Trainer, data: PreparedData, cfg: DictConfig, result: TrainingResult) -> None:
    """Final predictions, saved model, config and prediction files in the output directory."""
    sets = {"train": data.train, "test": data.test}
    with_forces = cfg.force.weight > 0 or cfg.tracking.save_forces  # energy-only runs skip the force pass
    if trainer.derivatives is not None:
        trainer.derivatives.growing = False  # a single pass: feature Jacobians would cost more than autograd once
    result.predictions = {name: trainer.predict(idx, with_forces) for name, idx in sets.items() if len(idx)}
    for name, pred in result.predictions.items():
        result.metrics.update({f"final/{k}": v for k, v in metrics_of(pred, name).items()})
    out = result.output_dir
    trainer.potential.save(out / MODEL_FILE)
    write_atomically(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    write_predictions(out, data.structures, result.predictions, cfg.tracking.save_energies, cfg.tracking.save_forces)
    if cfg.tracking.timing:
        print(timing_summary(result.timing, cfg.iterations))


def timing_summary(totals: dict[str, float], epochs: int) -> str:
    """A small table of seconds per phase, total and per epoch."""
    total = sum(totals.values()) or 1.0
    lines = ["phase        total_s   per_epoch_s   share"]
    for phase, seconds in totals.items():
        lines.append(f"{phase:<12} {seconds:8.3f} {seconds / epochs:12.4f} {100 * seconds / total:6.1f} %")
    return "\n".join(lines)
