"""SIGINT and SIGTERM as exceptions: a command stopped by Ctrl-C, ``timeout``, SLURM or torchrun unwinds like an
error, so that what it started (an MLflow run, a half-written file) is finished or removed on the way out and it
says in one line what it leaves (:func:`aenet_exp.cli.common.stopped`). Imports nothing heavy: the command line
installs it before anything else."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


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
