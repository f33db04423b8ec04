"""The side jobs of the epoch loop, as callbacks: divergence, history, early stopping, checkpoints, progress.

Each observes the loop (:class:`aenet_exp.training.events.Callback`); only :class:`EarlyStopping`
asks it to stop, through ``stop_requested``. The composition root (:mod:`aenet_exp.build.training`)
makes them from their config groups and orders them: a diverged epoch raises before anything
records it; history and early stopping update before the checkpoint that saves them.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
from tqdm.auto import tqdm

from aenet_exp.errors import UserError
from aenet_exp.files import WriteFailed
from aenet_exp.model.potential import Potential
from aenet_exp.rundir import BEST_MODEL_FILE, RETAINED
from aenet_exp.training.checkpoint import save_checkpoint
from aenet_exp.training.events import Callback
from aenet_exp.training.timing import PHASES


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the run stops and is marked FAILED."""


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class Divergence(Callback):
    """Stops training with :class:`TrainingDiverged` when an epoch's training loss is not finite."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        loss = metrics["train/loss"]
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged at epoch {epoch + 1}: the loss is {loss}; "
                "lower the learning rate (optimizer.mu / optimizer.lr) or check the data"
            )


class History(Callback):
    """Every epoch's metrics, per metric name (restored from a checkpoint when resuming)."""

    def __init__(self):
        self.values: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.values.setdefault(key, []).append(value)

    def last(self) -> dict[str, float]:
        """The latest value of every metric."""
        return {key: values[-1] for key, values in self.values.items()}

    def state_dict(self) -> dict:
        return self.values

    def load_state_dict(self, state: dict) -> None:
        self.values = {key: list(values) for key, values in state.items()}


class EarlyStopping(Callback):
    """``early_stopping.*``: keeps the best weights by ``metric``; asks to stop after ``patience`` epochs without
    an improvement of more than ``min_delta``.

    ``weights`` gives the weights that are evaluated (the average, with EMA); ``announce`` prints
    why training stopped.
    """

    def __init__(
        self, weights: Callable[[], Mapping[str, torch.Tensor]], patience: int, metric: str = "test/loss",
        min_delta: float = 0.0, announce: bool = True,
    ):
        self.weights = weights
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.announce = announce
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics[self.metric]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch + 1, 0
            self.best_weights = {k: v.detach().clone() for k, v in self.weights().items()}
        else:
            self.bad_epochs += 1
        self.stop_requested = self.bad_epochs >= self.patience
        if self.stop_requested and self.announce:
            print(f"early stopping after epoch {epoch + 1}: {self.metric} last improved at epoch {self.best_epoch}")

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
        self.best_weights = state["best_weights"]


class Checkpointer(Callback):
    """``checkpoint.*``: writes ``checkpoint.pt`` every ``every`` epochs and after the last one; with ``keep`` > 1
    also the last ``keep`` of them as ``checkpoints/epoch-<N>.pt``; and the best by ``watched`` (the early-stopping
    metric): ``checkpoints/best.pt`` and its evaluated weights as ``potential-best.pt``, for ``init_from``.

    A checkpoint holds the epoch, the resolved config, the potential's settings and weights, and
    the state of each of ``parts`` (the trainer, early stopping, the history), by name. Between
    writes it keeps a copy of the state at the end of the last epoch in memory, and writes it when
    training fails or is interrupted (SIGINT, SIGTERM): a resume then loses no finished epoch.
    It runs after the observers, so an epoch is logged before it is checkpointed.
    """

    def __init__(self, directory: Path, every: int, config_yaml: str, potential: Potential,
                 parts: Mapping[str, Stateful | None], keep: int = 1, watched: str = "test/loss",
                 evaluated_weights: Callable[[], Mapping[str, torch.Tensor]] | None = None):
        self.directory = Path(directory)
        self.every = every
        self.keep = keep
        self.config_yaml = config_yaml
        self.potential = potential
        self.parts = parts
        self.watched = watched
        self.evaluated_weights = evaluated_weights or potential.state_dict
        self.written_at: int | None = None
        self.latest: dict | None = None  # the state after the last finished epoch, when not written
        self.best_value = math.inf
        self.best: tuple[dict, dict] | None = None  # (state, evaluated weights) of the best epoch, not yet written

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics.get(self.watched, math.nan)
        if value < self.best_value:
            self.best_value = value
            weights = {k: v.detach().clone() for k, v in self.evaluated_weights().items()}
            self.best = (self.state(epoch + 1, copy=True), weights)
        if self.every and (epoch + 1) % self.every == 0:
            self.write(self.state(epoch + 1))
        else:
            self.latest = self.state(epoch + 1, copy=True)

    def on_fit_end(self, epochs_done: int) -> None:
        if self.written_at != epochs_done:
            self.write(self.state(epochs_done))

    def on_failure(self, error: BaseException) -> None:
        """Write the last finished epoch's state, unless what failed was a write (a full disk would refuse it too)."""
        if self.latest is not None and self.latest["epoch"] != self.written_at and not isinstance(error, WriteFailed):
            self.write(self.latest)

    def state(self, epochs_done: int, copy: bool = False) -> dict:
        """What continuing after ``epochs_done`` epochs needs; with ``copy``, unaffected by later training."""
        state = {
            "epoch": epochs_done,
            "config": self.config_yaml,
            "settings": self.potential.settings(),
            "model": self.potential.state_dict(),
            **{name: part.state_dict() if part is not None else None for name, part in self.parts.items()},
        }
        return snapshot(state) if copy else state

    def write(self, state: dict) -> None:
        """``checkpoint.pt`` (and the retained and best ones)."""
        whole = {**state, "history": cut(state.get("history"))}
        save_checkpoint(self.directory, whole)
        if self.keep > 1:
            save_checkpoint(self.directory, whole, f"{RETAINED}/epoch-{state['epoch']:06d}.pt")
            for old in sorted((self.directory / RETAINED).glob("epoch-*.pt"))[: -self.keep]:
                old.unlink()
        if self.best is not None:
            best, weights = self.best
            save_checkpoint(self.directory, {**best, "history": cut(best.get("history"))}, f"{RETAINED}/best.pt")
            self.potential.save(self.directory / BEST_MODEL_FILE, weights)
            self.best = None
        self.written_at = state["epoch"]
        self.latest = None


class HistoryUpTo(NamedTuple):
    """A metric history as it was: the live lists (only ever appended to) and their lengths then."""

    values: dict[str, list[float]]
    lengths: dict[str, int]


def snapshot(state: dict) -> dict:
    """A deep copy of ``state``, but the history: its lengths, so that copying costs nothing per epoch."""
    history = state.get("history")
    copied = copy.deepcopy({key: value for key, value in state.items() if key != "history"})
    copied["history"] = HistoryUpTo(history, {key: len(v) for key, v in history.items()}) if history is not None else None
    return copied


def cut(history) -> dict | None:
    """A history to save: as it is, or as it was when snapshotted."""
    if isinstance(history, HistoryUpTo):
        return {key: history.values[key][:n] for key, n in history.lengths.items()}
    return history


LOG_INTERVAL_S = 10.0  # without a terminal, a progress line at most this often (and after the last epoch)


def error_summary(metrics: dict[str, float]) -> str:
    """The loss and the train/test errors of an epoch in one short line (fits a progress bar in 120 columns):
    ``loss 0.0123  E 12.3/13.1 meV/atom  F 0.214/0.221 eV/Å`` (train/test)."""

    def pair(name: str, factor: float) -> str:
        values = [f"{metrics[f'{split}/{name}'] * factor:.3g}" for split in ("train", "test") if f"{split}/{name}" in metrics]
        return "/".join(values)

    parts = [f"loss {metrics['train/loss']:.4g}"] if "train/loss" in metrics else []
    if "train/energy_rmse" in metrics:
        parts.append(f"E {pair('energy_rmse', 1000.0)} meV/atom")
    if "train/force_rmse" in metrics:
        parts.append(f"F {pair('force_rmse', 1.0)} eV/Å")
    return "  ".join(parts)


def on_terminal() -> bool:
    """Whether progress bars can be drawn (stderr is a terminal)."""
    return sys.stderr.isatty()


class ProgressBar(Callback):
    """``tracking.show_progress`` / ``show_batch_progress``: on a terminal, tqdm bars of epochs (with the live
    errors, train/test) and of the batches of each epoch; elsewhere (a log file, a batch job) a line with the epoch and its
    errors every :data:`LOG_INTERVAL_S` seconds and after the last epoch."""

    def __init__(self, epochs: int, first_epoch: int, batches_per_epoch: int, show_epochs: bool, show_batches: bool):
        terminal = on_terminal()
        self.total = epochs
        self.epochs = tqdm(total=epochs, initial=first_epoch, desc="epochs", unit="epoch") if show_epochs and terminal else None
        self.log_lines = show_epochs and not terminal
        self.last_line = time.monotonic()
        self.show_batches = show_batches and terminal
        self.batches_per_epoch = batches_per_epoch
        self.batches = None

    def on_epoch_start(self, epoch: int) -> None:
        if self.show_batches:
            self.batches = tqdm(total=self.batches_per_epoch, desc=f"epoch {epoch + 1}", leave=False)

    def on_batch_end(self) -> None:
        if self.batches is not None:
            self.batches.update(1)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.batches is not None:
            self.batches.close()
            self.batches = None
        if self.epochs is not None:
            self.epochs.update(1)
            self.epochs.set_postfix_str(error_summary(metrics), refresh=False)
        if self.log_lines and (time.monotonic() - self.last_line >= LOG_INTERVAL_S or epoch + 1 == self.total):
            seconds = metrics.get("time/epoch_s", 0.0)
            print(f"epoch {epoch + 1}/{self.total}  {error_summary(metrics)}  ({seconds:.3g} s/epoch)", flush=True)
            self.last_line = time.monotonic()

    def on_fit_end(self, epochs_done: int) -> None:
        self.close()

    def on_failure(self, error: BaseException) -> None:
        self.close()

    def close(self) -> None:
        for bar in (self.batches, self.epochs):
            if bar is not None:
                bar.close()
        self.batches = self.epochs = None


class TimingSummary(Callback):
    """``tracking.timing``: seconds per phase summed over the epochs, printed as a table after training."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.totals = {phase: 0.0 for phase in PHASES}

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        for phase in PHASES:
            self.totals[phase] += metrics.get(f"time/{phase}_s", 0.0)

    def on_fit_end(self, epochs_done: int) -> None:
        print(timing_summary(self.totals, self.epochs))


def timing_summary(totals: dict[str, float], epochs: int) -> str:
    """A small table of seconds per phase, total and per epoch."""
    total = sum(totals.values()) or 1.0
    lines = ["phase        total_s   per_epoch_s   share"]
    for phase, seconds in totals.items():
        lines.append(f"{phase:<12} {seconds:8.3f} {seconds / epochs:12.4f} {100 * seconds / total:6.1f} %")
    return "\n".join(lines)
