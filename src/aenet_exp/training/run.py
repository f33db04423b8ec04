"""A training from built parts (:mod:`aenet_exp.build.training` makes them from the config): normalise, restore,
tell the callbacks, fit, then the final model, predictions and files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aenet_exp.evaluation.errors import metrics_of
from aenet_exp.evaluation.outputs import write_predictions
from aenet_exp.evaluation.uncertainty import calibrate, check_held_out, uncertainty_metrics
from aenet_exp.files import write_atomically
from aenet_exp.rundir import CONFIG_FILE, MODEL_FILE
from aenet_exp.training.callbacks import EarlyStopping, History
from aenet_exp.training.dataset import PreparedData
from aenet_exp.training.events import Callback, TrainingResult
from aenet_exp.training.loop import fit, notify, notify_failure
from aenet_exp.training.normalization import NormalizationSettings, fit_normalization
from aenet_exp.training.trainer import Trainer


@dataclass(frozen=True)
class Outputs:
    """What a finished run writes to ``directory``: its model, its config (``config_yaml``, the run's resolved
    configuration) and, when asked, the energies and forces of its splits."""

    directory: Path
    config_yaml: str
    save_energies: bool
    save_forces: bool


@dataclass
class Training:
    """Every part of one training, built: the data, the trainer, how to normalise a ``fresh`` potential, the
    checkpoint to continue from (and its ``first_epoch``), epochs up to ``iterations``, the metric history, early
    stopping, the callbacks in order, the resolved ``config`` and ``facts`` told to them, and the outputs."""

    data: PreparedData
    trainer: Trainer
    normalization: NormalizationSettings
    fresh: bool
    checkpoint: dict | None
    first_epoch: int
    iterations: int
    history: History
    stopping: EarlyStopping | None
    callbacks: Sequence[Callback]
    config: dict
    facts: dict
    outputs: Outputs


def train(job: Training) -> dict[str, float]:
    """Run ``job``: its final metrics."""
    fitted = normalize(job.trainer, job.data, job.normalization, job.fresh)
    if job.checkpoint is not None:
        restore(job.checkpoint, job.trainer, job.history, job.stopping)
    facts = {**job.data.facts(), **fitted, "caching.kept": ",".join(job.trainer.source.kept) or "none", **job.facts}
    notify(job.callbacks, "on_start", job.config, facts)
    return train_and_finish(job)


def normalize(trainer: Trainer, data: PreparedData, norm: NormalizationSettings, fresh: bool) -> dict[str, float]:
    """Fit the normalisation of a ``fresh`` potential (resumed and fine-tuned ones keep theirs), share it over
    ranks, and set the trainer's targets; returns the fitted values as facts to log."""
    fitted = {}
    if fresh:
        fitted = fit_normalization(trainer.potential, data.columns.take(data.train), data.atomic_energies,
                                   trainer.feature_statistics, norm)
    trainer.ranks.broadcast(trainer.potential)  # rank 0's weights and normalisation everywhere (bit for bit)
    trainer.set_targets(data.atomic_energies if norm.cohesive else None)
    trainer.timer.take()  # the statistics pass is not an epoch
    return fitted


def restore(checkpoint: dict, trainer: Trainer, history: History, stopping: EarlyStopping | None) -> None:
    """Continue from ``checkpoint``: the trainer's state, the metric history, early stopping."""
    trainer.load_state_dict(checkpoint["trainer"])
    history.load_state_dict(checkpoint["history"])
    if stopping is not None:
        stopping.load_state_dict(checkpoint["early_stopping"])


def train_and_finish(job: Training) -> dict[str, float]:
    """The epochs, then the final model, predictions and files; every callback told of the end or the failure."""
    trainer, callbacks = job.trainer, job.callbacks
    try:
        fit(trainer, job.first_epoch, job.iterations, callbacks)
        result = TrainingResult(job.history.values, job.history.last(), {}, job.outputs.directory)
        if job.data.reference_fit_rmse is not None:
            result.metrics["final/E_atomic_fit_rmse"] = job.data.reference_fit_rmse
        keep_final_weights(trainer, job.stopping, result)
        if trainer.ranks.main:
            finish(trainer, job.data, job.outputs, result)
        notify(callbacks, "on_end", result)
    except BaseException as error:
        notify_failure(callbacks, error)
        raise
    return result.metrics


def keep_final_weights(trainer: Trainer, stopping: EarlyStopping | None, result: TrainingResult) -> None:
    """The potential keeps the best weights (early stopping, ``final/best_epoch``), else the average (EMA)."""
    if stopping is not None and stopping.best_weights is not None:
        trainer.potential.load_state_dict(stopping.best_weights)
        result.metrics["final/best_epoch"] = stopping.best_epoch
    elif trainer.average is not None:
        trainer.potential.load_state_dict(trainer.average.weights())


def finish(trainer: Trainer, data: PreparedData, outputs: Outputs, result: TrainingResult) -> None:
    """Final predictions, saved model, config and prediction files in the output directory."""
    sets = {"train": data.train, "test": data.test}
    with_forces = trainer.supervision.active or outputs.save_forces  # energy-only runs skip the force pass
    trainer.source.freeze()
    committee = trainer.potential.members > 1
    if committee and len(data.calibration):
        fitted = calibrate(trainer.potential, lambda: trainer.predict(data.calibration, with_forces))
        result.metrics |= fitted.metrics(len(data.calibration))
    result.predictions = {name: trainer.predict(idx, with_forces) for name, idx in sets.items() if len(idx)}
    if committee and "test" in result.predictions:
        check_held_out(result.predictions["test"], "test")
    calibration = trainer.potential.calibration
    for name, pred in result.predictions.items():
        result.metrics.update({f"final/{k}": v for k, v in metrics_of(pred, name).items()})
        if committee:
            result.metrics.update({f"final/{k}": v for k, v in uncertainty_metrics(pred, name, calibration).items()})
    out = result.output_dir
    trainer.potential.save(out / MODEL_FILE)
    write_atomically(out / CONFIG_FILE, outputs.config_yaml)
    write_predictions(out, data.structures, result.predictions, outputs.save_energies, outputs.save_forces)
