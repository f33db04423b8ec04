"""How an optimiser is stepped through an epoch: one strategy per kind of optimiser, one interface for all.

- :class:`GradientSteps`: a step per batch along the gradient of the batch's loss (Adam, AdamW, SGD);
- :class:`FullBatchStep`: one step per epoch on the loss of the whole training set, evaluated batch by batch
  (L-BFGS);
- :class:`KalmanUpdates`: an update per batch with the batch's errors as its measurements (EKF).

Each drives an epoch's batches given as an :class:`EpochContext` and returns the epoch's pooled errors; the
trainer does not know which one it holds. Each is built with its optimiser (:mod:`aenet_exp.training.optim`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, Protocol

import torch

from aenet_exp.training.bootstrap import BatchWeights
from aenet_exp.training.distributed import Ranks
from aenet_exp.evaluation.errors import ErrorSums
from aenet_exp.training.sampling import EpochSampling
from aenet_exp.training.schedule import WeightAverage
from aenet_exp.training.supervision import ForceSupervision
from aenet_exp.training.timing import PhaseTimer


class BatchErrors(NamedTuple):
    """A planned batch's errors (this rank's share of it), per committee member."""

    order: list[int]  # the structures of ``energy``, in order
    energy: torch.Tensor  # (members, n) eV/atom
    force: torch.Tensor | None  # (members, n_force_atoms, 3) eV/Å of the batch's force-supervised structures
    weights: BatchWeights | None  # the members' weights of these errors (committee.bootstrap); None: each counts once


@dataclass(frozen=True)
class EpochContext:
    """What a step strategy drives one training epoch with.

    ``batches(create_graph)`` yields each planned batch's errors, in the epoch's order, anew on every call;
    ``create_graph`` keeps the force graph, so a force loss can be back-propagated.
    """

    batches: Callable[[bool], Iterator[BatchErrors]]
    supervision: ForceSupervision
    energy_scale: float  # the potential's energy scale, eV/atom per normalised unit
    sampling: EpochSampling  # told each batch's energy errors (error_weighted sampling)
    average: WeightAverage | None  # folds in the weights after each step (ema)
    timer: PhaseTimer
    ranks: Ranks  # the training processes: errors and gradients are summed over them

    def update_average(self) -> None:
        """Fold the weights just stepped into the weight average, if there is one."""
        if self.average is not None:
            with self.timer.phase("optimizer"):
                self.average.update()


class StepStrategy(Protocol):
    """How an optimiser is stepped through an epoch."""

    def train_epoch(self, epoch: EpochContext, after_batch: Callable[[], None]) -> ErrorSums:
        """Step through ``epoch``'s batches, calling ``after_batch`` after each; the epoch's errors, pooled over
        this rank's batches (each member's, as :meth:`ErrorSums.add_members` adds them)."""

    def metrics(self) -> dict[str, float]:
        """The strategy's own ``train/*`` metrics after an epoch."""


def parameters_of(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """The weights ``optimizer`` steps, in its order."""
    return [p for group in optimizer.param_groups for p in group["params"]]


class PerBatchSteps(ABC):
    """A step of ``optimizer`` per planned batch (:meth:`step`), the weight average updated after each."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def train_epoch(self, epoch: EpochContext, after_batch: Callable[[], None]) -> ErrorSums:
        sums = ErrorSums()
        for batch in epoch.batches(True):
            epoch.sampling.observe(batch.order, batch.energy.detach().mean(0))
            self.step(epoch, batch)
            epoch.update_average()
            sums.add_members(batch.energy, batch.force)
            after_batch()
        return sums

    @abstractmethod
    def step(self, epoch: EpochContext, batch: BatchErrors) -> None:
        """Step the optimiser on ``batch``'s errors."""

    def metrics(self) -> dict[str, float]:
        return {}


class GradientSteps(PerBatchSteps):
    """A step per batch along the gradient of its loss (:meth:`ForceSupervision.batch_loss`), summed over ranks."""

    def step(self, epoch: EpochContext, batch: BatchErrors) -> None:
        with epoch.timer.phase("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            loss = epoch.supervision.batch_loss(batch.energy, batch.force, epoch.energy_scale, batch.weights,
                                                epoch.ranks)
            if loss.requires_grad:  # a rank's empty share has no graph
                loss.backward()
            epoch.ranks.sum_gradients(parameters_of(self.optimizer))
        with epoch.timer.phase("optimizer"):
            self.optimizer.step()


class KalmanUpdates(PerBatchSteps):
    """A Kalman update per batch (:class:`~aenet_exp.training.kalman.KalmanFilter`) with the batch's errors as
    its measurements (:meth:`ForceSupervision.measurements`), the force errors in ``force_measurements`` groups of
    atoms. The filter takes a single potential's errors (the first member's)."""

    def __init__(self, optimizer: torch.optim.Optimizer, force_measurements: int):
        super().__init__(optimizer)
        self.force_measurements = force_measurements

    def step(self, epoch: EpochContext, batch: BatchErrors) -> None:
        force_error = batch.force[0] if batch.force is not None else None
        measure = partial(epoch.supervision.measurements, batch.energy[0], force_error, epoch.energy_scale,
                          self.force_measurements)
        with epoch.timer.phase("optimizer"):  # the update back-propagates the measurements' Jacobians itself
            self.optimizer.step(measure)

    def metrics(self) -> dict[str, float]:
        """``train/kalman_lambda``: the filter's forgetting factor λ now."""
        return {"train/kalman_lambda": self.optimizer.param_groups[0]["lambda"]}


class FullBatchStep:
    """One step per epoch of a full-batch optimiser (L-BFGS) on the loss pooled over the whole training set.

    Each loss evaluation takes two passes over the batches: the squared-error sums first, then each batch's
    share of the pooled loss back-propagated (:meth:`PooledLoss.part`), so no more than a batch's graph is held
    at once. The epoch's errors are those of the first evaluation (the weights the epoch started with).
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def train_epoch(self, epoch: EpochContext, after_batch: Callable[[], None]) -> ErrorSums:
        first: list[ErrorSums] = []

        def closure() -> torch.Tensor:
            sums, totals = ErrorSums(), None
            with torch.no_grad(), epoch.timer.phase("forward"):
                for batch in epoch.batches(False):
                    part = epoch.supervision.squares(batch.energy, batch.force, batch.weights).flat()
                    totals = part if totals is None else totals + part
                    sums.add_members(batch.energy, batch.force)
                    if not first:
                        epoch.sampling.observe(batch.order, batch.energy.mean(0))
            pooled = epoch.supervision.pooled(epoch.ranks.sum(totals), epoch.energy_scale)
            self.optimizer.zero_grad(set_to_none=True)
            for batch in epoch.batches(True):
                with epoch.timer.phase("backward"):
                    share = pooled.part(epoch.supervision.squares(batch.energy, batch.force, batch.weights).sums)
                    if share.requires_grad:
                        share.backward()
                after_batch()
            epoch.ranks.sum_gradients(parameters_of(self.optimizer))
            if not first:
                first.append(sums)
            return torch.tensor(pooled.value(), dtype=torch.float64)

        with epoch.timer.phase("optimizer"):
            self.optimizer.step(closure)
            if epoch.average is not None:
                epoch.average.update()
        return first[0]

    def metrics(self) -> dict[str, float]:
        return {}
