"""The epoch loop: the trainer trains, the callbacks observe."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from aenet_exp.interrupts import interrupts_deferred
from aenet_exp.training.events import Callback
from aenet_exp.training.trainer import Trainer


def notify(callbacks: Sequence[Callback], hook: str, *args) -> None:
    """Call ``hook`` of every callback, in order."""
    for callback in callbacks:
        getattr(callback, hook)(*args)


def notify_failure(callbacks: Sequence[Callback], error: BaseException) -> None:
    """Tell every callback that training failed with ``error``; one that fails in turn does not stop the others
    (nor hide ``error``): it is reported as a warning."""
    for callback in callbacks:
        try:
            callback.on_failure(error)
        except Exception as failure:  # a side job's own trouble while cleaning up
            warnings.warn(f"{type(callback).__name__} failed while recording the failure: {failure}", stacklevel=1)


def fit(trainer: Trainer, first_epoch: int, last_epoch: int, callbacks: Sequence[Callback]) -> int:
    """Epochs ``first_epoch`` .. ``last_epoch − 1`` (0-based), each told to ``callbacks``; stops early when one asks.

    Returns the number of epochs done (counting those before ``first_epoch``).
    """
    done = first_epoch
    for epoch in range(first_epoch, last_epoch):
        notify(callbacks, "on_epoch_start", epoch)
        metrics = trainer.epoch(epoch, after_batch=lambda: notify(callbacks, "on_batch_end"))
        with interrupts_deferred():
            notify(callbacks, "on_epoch_end", epoch, metrics)
            done = epoch + 1
        if any(callback.stop_requested for callback in callbacks):
            break
    notify(callbacks, "on_fit_end", done)
    return done
