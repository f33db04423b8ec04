"""What training tells its callbacks (tracking, checkpoints, progress): plain data only, never a way back in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aenet_exp.evaluation.predictions import Predictions


@dataclass
class TrainingResult:
    history: dict[str, list[float]]  # metric name -> per-epoch values
    metrics: dict[str, float]  # final values
    predictions: dict[str, Predictions]  # 'train', 'test'
    output_dir: Path


class Callback:
    """A side job of training, told what happens and never reaching back into the loop.

    Hooks, in order: :meth:`on_start` (the resolved config and dataset facts, before the first
    epoch); per epoch :meth:`on_epoch_start`, :meth:`on_batch_end` after each optimiser step and
    :meth:`on_epoch_end` with the epoch's metrics; :meth:`on_fit_end` after the last epoch;
    :meth:`on_end` with the final result, or :meth:`on_failure` when training raised. A callback
    may set :attr:`stop_requested` to end training after the current epoch (early stopping).
    """

    stop_requested: bool = False

    def on_start(self, config: dict, facts: dict) -> None: ...

    def on_epoch_start(self, epoch: int) -> None: ...

    def on_batch_end(self) -> None: ...

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_fit_end(self, epochs_done: int) -> None: ...

    def on_end(self, result: TrainingResult) -> None: ...

    def on_failure(self, error: BaseException) -> None: ...
