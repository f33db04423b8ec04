"""The training epoch: each batch's errors, handed to the step strategy of the optimiser plan
(:mod:`aenet_exp.training.steps`); the test set's errors; the state a checkpoint keeps.

A :class:`Trainer` is built from objects, never from the config: the composition root
(:mod:`aenet_exp.build.training`) makes each of them from its config group.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from aenet_exp.evaluation.errors import ErrorSums, error_sums
from aenet_exp.evaluation.predictions import BatchOutput, DataSet, Predictions, predictions_of
from aenet_exp.model.potential import Potential
from aenet_exp.training.batching import plan_batches
from aenet_exp.training.bootstrap import MemberWeights
from aenet_exp.training.checkpoint import CheckpointError
from aenet_exp.training.columns import Columns
from aenet_exp.training.distributed import SINGLE, Ranks
from aenet_exp.training.features import FeatureSource
from aenet_exp.training.normalization import Labels, feature_statistics
from aenet_exp.training.optim import OptimizerPlan
from aenet_exp.training.sampling import EpochSampling
from aenet_exp.training.schedule import EpochSchedule, WeightAverage
from aenet_exp.training.steps import BatchErrors, EpochContext
from aenet_exp.training.supervision import ForceSupervision
from aenet_exp.training.timing import PhaseTimer


@dataclass(frozen=True)
class TrainingData:
    """The structures a trainer fits and evaluates, without the structures themselves."""

    columns: Columns  # per-structure facts (atom counts, energies, which have forces)
    train: np.ndarray  # (n_train,) indices of the training structures
    test: np.ndarray  # (n_test,) indices of the test structures


@dataclass(frozen=True)
class Runtime:
    """Where and how training runs: ``device`` evaluates the networks, ``label_device`` keeps the energy targets
    (``precision.memory_mode``), ``timer`` times the phases, ``ranks`` are the training processes
    (``distributed=ddp``)."""

    device: torch.device
    label_device: torch.device
    timer: PhaseTimer
    ranks: Ranks = SINGLE


class Trainer:
    """Trains ``potential`` on the structures ``data.train`` and evaluates it on ``data.test``.

    Args:
        source: the batches' energies and forces (:class:`FeatureSource`, or anything yielding
            :class:`BatchOutput` as its ``outputs`` does).
        supervision: the force subset of each epoch and the loss.
        sampling: the structures of each epoch, in order (``sampling.*``, with the seeded epoch order).
        plan: the optimiser, the strategy stepping it through an epoch, the batch size (``optimizer.*``).
        schedule: the learning rate per epoch (``scheduler.*``).
        runtime: devices, timer and ranks; with several ranks each evaluates its share of every batch and of the
            test set, and errors and gradients are summed over ranks.
        average: the weight average (``ema``), updated after each optimiser step.
        member_weights: each committee member's weight per structure in its loss (``committee.bootstrap``).
    """

    def __init__(
        self,
        potential: Potential,
        data: TrainingData,
        source: FeatureSource,
        supervision: ForceSupervision,
        sampling: EpochSampling,
        plan: OptimizerPlan,
        schedule: EpochSchedule,
        runtime: Runtime,
        *,
        average: WeightAverage | None = None,
        member_weights: MemberWeights | None = None,
    ):
        self.potential = potential
        self.columns = data.columns
        self.train_idx, self.test_idx = np.asarray(data.train), np.asarray(data.test)
        self.source = source
        self.supervision = supervision
        self.sampling = sampling
        self.optimizer, self.steps, self.batchsize = plan.optimizer, plan.steps, plan.batchsize
        self.schedule = schedule
        self.average = average
        self.member_weights = member_weights
        self.device, self.label_device = runtime.device, runtime.label_device
        self.timer = runtime.timer
        self.ranks = runtime.ranks
        self.dtype = potential.descriptor.dtype
        self.labels: Labels | None = None  # set_targets, once the normalisation is fitted
        self.references: Mapping[str, float] | None = None  # the atoms' reference energies, eV (cohesive)

    def set_targets(self, references: Mapping[str, float] | None) -> None:
        """Normalised energy targets from the potential's fitted shift and scale (call after normalising)."""
        shift, scale = float(self.potential.energy_shift), float(self.potential.energy_scale)
        self.labels = Labels.of(self.columns, references, shift, scale, self.dtype, self.label_device)
        self.references = references

    def feature_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std ``(n_features,)`` of raw features over the training atoms (ranks take every ``size``-th batch)."""
        plan = plan_batches(self.train_idx, self.batchsize, None)[self.ranks.rank :: self.ranks.size]
        n = self.potential.descriptor.n_features
        return feature_statistics(self.source.raw_features(plan), n, self.device, self.ranks)

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict:
        """Optimiser, random generators, force subset, split, schedule and average: what continuing exactly needs."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "epoch_order": self.sampling.rng.bit_generator.state},
            "sampling": self.sampling.state_dict(),
            "force_subset": self.supervision.state_dict(),
            "split": {"train": torch.from_numpy(self.train_idx), "test": torch.from_numpy(self.test_idx)},
            "schedule": self.schedule.state_dict(),
            "average": self.average.state_dict() if self.average is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` (or the layout before its keys were renamed: :func:`in_current_layout`);
        the data must split exactly as it did."""
        state = in_current_layout(state)
        split = state["split"]
        if not (np.array_equal(split["train"].numpy(), self.train_idx) and np.array_equal(split["test"].numpy(), self.test_idx)):
            raise CheckpointError("the data no longer splits as it did when the checkpoint was written (changed files?)")
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        self.sampling.rng.bit_generator.state = state["rng"]["epoch_order"]
        if "sampling" in state:  # checkpoints before the sampling group had only the epoch order's generator
            self.sampling.load_state_dict(state["sampling"])
        self.supervision.load_state_dict(state["force_subset"])
        self.schedule.load_state_dict(state["schedule"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])

    # ------------------------------------------------------------------ epochs

    def epoch(self, epoch: int, after_batch: Callable[[], None] = lambda: None) -> dict[str, float]:
        """Train one epoch, evaluate the test set, step the schedule: the epoch's metrics.

        ``train/*`` and ``test/*`` errors and losses, ``train/lr`` (``train/kalman_lambda`` with the EKF),
        ``time/epoch_s`` and ``time/eval_s``, and with timing ``time/<phase>_s`` (seconds).
        """
        start = time.perf_counter()
        metrics = self.train_epoch(epoch, after_batch)
        phases = self.timer.take()
        evaluation = time.perf_counter()
        metrics.update(self.test_metrics())
        self.timer.take()  # evaluation is timed as a whole, apart from the training phases
        metrics["time/eval_s"] = time.perf_counter() - evaluation
        metrics["time/epoch_s"] = time.perf_counter() - start
        if self.timer.enabled:
            metrics |= {f"time/{phase}_s": seconds for phase, seconds in phases.items()}
        self.schedule.step(metrics)
        return metrics

    def train_epoch(self, epoch: int, after_batch: Callable[[], None] = lambda: None) -> dict[str, float]:
        """One pass over the training set, as the plan's step strategy steps the optimiser; returns pooled
        ``train/*`` metrics, ``train/lr``, the strategy's own metrics and memory."""
        self.potential.train()
        energy_scale = float(self.potential.energy_scale)  # read once, not per batch
        force_set, redrawn = self.supervision.select(epoch)
        if redrawn:
            self.source.forget_features(force_set)
        batches = plan_batches(self.sampling.epoch_order(), self.batchsize, None)
        shares = [self.ranks.share(batch, self.columns.n_atoms) for batch in batches]
        learning_rate = self.schedule.learning_rate()
        context = EpochContext(partial(self._batch_errors, shares, force_set), self.supervision, energy_scale,
                               self.sampling, self.average, self.timer, self.ranks)
        sums = self.steps.train_epoch(context, after_batch)
        sums.sum_over(self.ranks, self.device)
        metrics = {"train/loss": self.supervision.loss(sums.energy_rmse(), sums.force_rmse(), energy_scale),
                   **sums.metrics("train")}
        if learning_rate is not None:
            metrics["train/lr"] = learning_rate
        metrics |= self.steps.metrics()
        return metrics | self.sampling.end_epoch(self.device) | self.source.memory_metrics()

    def _batch_errors(self, shares: list[np.ndarray], force_set: frozenset[int], create_graph: bool
                      ) -> Iterator[BatchErrors]:
        """Each planned batch's (this rank's share's) errors, per member, with the members' weights of them."""
        for _, output in self.source.outputs(self.potential, shares, force_set, create_graph=create_graph):
            if output is not None:
                energy_error, force_error = self._errors(output)
                weights = self.member_weights.batch(output.order, output.force_indices) if self.member_weights else None
                yield BatchErrors(output.order, energy_error, force_error, weights)
            else:  # this rank's share of the batch is empty: it adds nothing but joins every sum
                empty = torch.zeros(self.potential.members, 0, dtype=self.dtype, device=self.device)
                yield BatchErrors([], empty, None, self.member_weights.batch([], []) if self.member_weights else None)

    def _errors(self, out: BatchOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each member's per-atom energy errors ``(members, n)`` eV/atom and force errors ``(members, n_force_atoms,
        3)`` eV/Å."""
        order = torch.tensor(out.order, device=self.labels.target.device)
        target = self.labels.target[order].to(self.device)
        n_atoms = self.labels.n_atoms[order].to(self.device)
        energy_error = self.potential.energy_scale * (out.energies / n_atoms - target)
        if out.forces is None:
            return energy_error, None
        return energy_error, out.forces - out.reference_forces

    def predict(self, indices: np.ndarray, with_forces: bool) -> Predictions:
        """Energies (and forces of force-labelled structures when ``with_forces``) of ``indices``: a committee's mean,
        with its members' standard deviation times the potential's calibration (:func:`predictions_of`)."""
        self.potential.eval()
        force_set = frozenset(int(i) for i in indices if with_forces and self.columns.has_forces[i])
        plan = plan_batches(indices, self.batchsize, None)
        outputs = (out for _, out in self.source.outputs(self.potential, plan, force_set, create_graph=False))
        data = DataSet(
            energy=self.columns.energy, n_atoms=self.columns.n_atoms, offset=self.labels.offset,
            reference=self.columns.reference_energy(self.references) if self.references else None,
        )
        return predictions_of(self.potential, outputs, indices, data)

    def test_metrics(self) -> dict[str, float]:
        """Pooled ``test/*`` errors and loss of the evaluated weights (forces when training on forces).

        Each rank predicts its share of the test set (balanced by atoms); the error sums are added over ranks.
        """
        if len(self.test_idx) == 0:
            return {}
        share = self.ranks.share(self.test_idx, self.columns.n_atoms)
        with self.evaluated_weights():
            sums = error_sums(self.predict(share, with_forces=self.supervision.active))
        sums.sum_over(self.ranks, self.device)
        metrics = sums.metrics("test")
        scale = float(self.potential.energy_scale)
        metrics["test/loss"] = self.supervision.loss(metrics["test/energy_rmse"], metrics.get("test/force_rmse"), scale)
        return metrics

    def evaluated_weights(self):
        """Context in which the potential carries the weights that are evaluated and kept (the average, with EMA)."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def kept_weights(self) -> dict[str, torch.Tensor]:
        """The state dict evaluated by :meth:`evaluated_weights`."""
        return self.average.weights() if self.average is not None else self.potential.state_dict()


def in_current_layout(state: dict) -> dict:
    """A trainer's checkpoint ``state`` as :meth:`Trainer.state_dict` writes it now.

    Checkpoints written before the keys were renamed hold the epoch order's generator as ``rng.shuffle``, the
    force subset's as ``rng.sampler`` and the subset itself (``selected``, ``window``) as ``sampler``.
    """
    if "sampler" not in state:
        return state
    moved = {key: value for key, value in state.items() if key != "sampler"}
    rng = state["rng"]
    return moved | {"rng": {"torch": rng["torch"], "epoch_order": rng["shuffle"]},
                    "force_subset": {"rng": rng["sampler"], **state["sampler"]}}
