"""The epoch loop: the trainer trains, the callbacks observe."""

from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from aenet_exp.training.events import Callback
from aenet_exp.training.trainer import Trainer


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, SLURM, a scheduler) arrived: handled like Ctrl-C, the run is marked KILLED."""


@contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise interruption(signum)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interruption(signum: int) -> KeyboardInterrupt:
    """What a signal raises: :class:`Terminated` for SIGTERM, ``KeyboardInterrupt`` for SIGINT."""
    if signum == signal.SIGTERM:
        return Terminated(f"terminated by signal {signal.Signals(signum).name}")
    return KeyboardInterrupt()


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Within the block, a first SIGINT or SIGTERM takes effect at the block's end, a second one at once.

    An epoch's end is told to every callback or to none: interrupted between the MLflow observer and
    the checkpointer, a run would have an epoch logged that its checkpoint does not hold, and a resume
    would log it twice.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def defer(signum, frame):
        if received:
            raise interruption(signum)
        received.append(signum)

    ignored = signal.SIG_IGN  # a signal the process ignores (SIGINT of a background job) stays ignored
    previous = {signum: signal.signal(signum, defer) for signum in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(signum) is not ignored}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise interruption(received[0])


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
