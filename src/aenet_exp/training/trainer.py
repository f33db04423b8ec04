"""The step loop: each batch's errors, the loss of :class:`ForceSupervision`, the gradient and the optimiser step.

A :class:`Trainer` is built from objects, never from the config: the composition root
(:mod:`aenet_exp.build.training`) makes each of them from its config group.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
import torch

from aenet_exp.evaluation.errors import ErrorSums, error_sums
from aenet_exp.evaluation.predictions import BatchOutput, DataSet, Predictions, predictions_of
from aenet_exp.model.potential import Potential
from aenet_exp.training.batching import plan_batches
from aenet_exp.training.bootstrap import BatchWeights, MemberWeights
from aenet_exp.training.checkpoint import CheckpointError
from aenet_exp.training.columns import Columns
from aenet_exp.training.distributed import SINGLE, Ranks
from aenet_exp.training.features import FeatureSource
from aenet_exp.training.normalization import Labels, feature_statistics
from aenet_exp.training.sampling import EpochSampling
from aenet_exp.training.schedule import EpochSchedule, WeightAverage
from aenet_exp.training.supervision import ForceSupervision
from aenet_exp.training.timing import PhaseTimer


class Trainer:
    """Trains ``potential`` on the structures ``train`` and evaluates it on ``test``.

    Args:
        columns: per-structure facts (atom counts, energies, which have forces).
        source: the batches' energies and forces (:class:`FeatureSource`).
        supervision: the force subset of each epoch and the loss.
        sampling: the structures of each epoch, in order (``sampling.*``, with the seeded shuffling).
        batchsize: structures per planned batch (``optimizer.batchsize``).
        step: how the optimiser is stepped (:data:`~aenet_exp.training.optim.STEPS`): ``gradient``, a step per
            batch on its loss's gradient; ``full_batch``, one step per epoch on the loss of the whole training
            set (L-BFGS), evaluated batch by batch; ``kalman``, an update per batch from the batch's energy and
            force errors as measurements (EKF, :meth:`ForceSupervision.measurements`).
        force_measurements: with the Kalman step, the groups of atoms the batch's force errors are measured in.
        member_weights: each committee member's weight per structure in its loss (``committee.bootstrap``).
        ranks: the training processes (``distributed=ddp``): each evaluates its share of every
            batch and of the test set; errors and gradients are summed over ranks.
    """

    def __init__(
        self,
        potential: Potential,
        columns: Columns,
        train: np.ndarray,
        test: np.ndarray,
        source: FeatureSource,
        supervision: ForceSupervision,
        optimizer: torch.optim.Optimizer,
        schedule: EpochSchedule,
        average: WeightAverage | None,
        sampling: EpochSampling,
        *,
        batchsize: int,
        step: str = "gradient",
        force_measurements: int = 1,
        member_weights: MemberWeights | None = None,
        device: torch.device,
        label_device: torch.device,
        timer: PhaseTimer,
        ranks: Ranks = SINGLE,
    ):
        self.potential = potential
        self.columns = columns
        self.train_idx, self.test_idx = np.asarray(train), np.asarray(test)
        self.source = source
        self.supervision = supervision
        self.optimizer = optimizer
        self.schedule = schedule
        self.average = average
        self.batchsize = batchsize
        self.step = step
        self.force_measurements = force_measurements
        self.member_weights = member_weights
        self.sampling = sampling
        self.device, self.label_device = device, label_device
        self.dtype = potential.descriptor.dtype
        self.timer = timer
        self.ranks = ranks
        self.labels: Labels | None = None  # set_targets, once the normalisation is fitted
        self.scale = 1.0  # float(potential.energy_scale) while a training epoch runs (read once, not per batch)
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
        forces = self.supervision.state_dict()
        return {
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "shuffle": self.sampling.rng.bit_generator.state, "sampler": forces["rng"]},
            "sampling": self.sampling.state_dict(),
            "sampler": {"selected": forces["selected"], "window": forces["window"]},
            "split": {"train": torch.from_numpy(self.train_idx), "test": torch.from_numpy(self.test_idx)},
            "schedule": self.schedule.state_dict(),
            "average": self.average.state_dict() if self.average is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`; the data must split exactly as it did."""
        split = state["split"]
        if not (np.array_equal(split["train"].numpy(), self.train_idx) and np.array_equal(split["test"].numpy(), self.test_idx)):
            raise CheckpointError("the data no longer splits as it did when the checkpoint was written (changed files?)")
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        self.sampling.rng.bit_generator.state = state["rng"]["shuffle"]
        if "sampling" in state:  # checkpoints before the sampling group had only the shuffle
            self.sampling.load_state_dict(state["sampling"])
        self.supervision.load_state_dict({"rng": state["rng"]["sampler"], **state["sampler"]})
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
        """One pass over the training set (a step per batch, or a full-batch step); returns pooled ``train/*``
        metrics, ``train/lr`` and memory."""
        self.potential.train()
        self.scale = float(self.potential.energy_scale)
        force_set, redrawn = self.supervision.select(epoch)
        if redrawn:
            self.source.forget_features(force_set)
        batches = plan_batches(self.sampling.epoch_order(), self.batchsize, None)
        shares = [self.ranks.share(batch, self.columns.n_atoms) for batch in batches]
        learning_rate = self.schedule.learning_rate()
        if self.step == "full_batch":
            sums = self._full_batch_step(shares, force_set, after_batch)
        else:
            sums = self._batch_steps(shares, force_set, after_batch)
        sums.sum_over(self.ranks, self.device)
        metrics = {"train/loss": self.supervision.loss(sums.energy_rmse(), sums.force_rmse(), self.scale),
                   **sums.metrics("train")}
        if learning_rate is not None:
            metrics["train/lr"] = learning_rate
        if self.step == "kalman":
            metrics["train/kalman_lambda"] = self.optimizer.param_groups[0]["lambda"]
        return metrics | self.sampling.end_epoch(self.device) | self.source.memory_metrics()

    def _batch_errors(self, shares: list[np.ndarray], force_set: frozenset[int], create_graph: bool):
        """Each planned batch's (this rank's share's) errors, per member: energy ``(members, n)`` eV/atom and forces
        ``(members, m, 3)`` eV/Å, with the members' weights of them (None: every error counts once)."""
        for _, output in self.source.outputs(self.potential, shares, force_set, create_graph=create_graph):
            if output is not None:
                energy_error, force_error = self._errors(output)
                weights = self.member_weights.batch(output.order, output.force_indices) if self.member_weights else None
                yield output.order, energy_error, force_error, weights
            else:  # this rank's share of the batch is empty: it adds nothing but joins every sum
                empty = torch.zeros(self.potential.members, 0, dtype=self.dtype, device=self.device)
                yield [], empty, None, self.member_weights.batch([], []) if self.member_weights else None

    def _batch_steps(self, shares: list[np.ndarray], force_set: frozenset[int], after_batch) -> ErrorSums:
        """A step per planned batch (:meth:`_step`); the epoch's pooled errors."""
        sums = ErrorSums()
        for order, energy_error, force_error, weights in self._batch_errors(shares, force_set, create_graph=True):
            self.sampling.observe(order, energy_error.detach().mean(0))
            self._step(energy_error, force_error, weights)
            sums.add_members(energy_error, force_error)
            after_batch()
        return sums

    def _step(self, energy_error: torch.Tensor, force_error: torch.Tensor | None, weights: BatchWeights | None) -> None:
        """One optimiser step on a batch's errors ``(members, ...)``: a step along the gradient of its loss, or a
        Kalman update with its errors as the measurements (a single potential's: the filter takes one member)."""
        if self.step == "kalman":
            single_force_error = force_error[0] if force_error is not None else None
            measure = partial(self.supervision.measurements, energy_error[0], single_force_error, self.scale,
                              self.force_measurements)
            with self.timer.phase("optimizer"):  # the update back-propagates the measurements' Jacobians itself
                self.optimizer.step(measure)
        else:
            with self.timer.phase("backward"):
                self.optimizer.zero_grad(set_to_none=True)
                self._backward(energy_error, force_error, weights)
            with self.timer.phase("optimizer"):
                self.optimizer.step()
        if self.average is not None:
            with self.timer.phase("optimizer"):
                self.average.update()

    def _full_batch_step(self, shares: list[np.ndarray], force_set: frozenset[int], after_batch) -> ErrorSums:
        """One step of a full-batch optimiser (L-BFGS) on the loss pooled over the whole training set.

        Each loss evaluation takes two passes over the batches: the squared-error sums first, then each batch's
        share of the pooled loss back-propagated (:meth:`ForceSupervision.part_loss`), so no more than a batch's
        graph is held at once. Returns the errors of the first evaluation (the weights the epoch started with).
        """
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        scale = self.scale
        first: list[ErrorSums] = []

        def closure() -> torch.Tensor:
            sums = ErrorSums()
            totals = torch.zeros(4 * self.potential.members, dtype=torch.float64, device=self.device)
            with torch.no_grad(), self.timer.phase("forward"):
                for order, energy_error, force_error, weights in self._batch_errors(shares, force_set, create_graph=False):
                    squares, counts = self.supervision.squares(energy_error, force_error, weights)
                    totals += torch.cat([squares.double().flatten(), counts.flatten()])
                    sums.add_members(energy_error, force_error)
                    if not first:
                        self.sampling.observe(order, energy_error.mean(0))
            totals = self.ranks.sum(totals)
            self.optimizer.zero_grad(set_to_none=True)
            for _, energy_error, force_error, weights in self._batch_errors(shares, force_set, create_graph=True):
                with self.timer.phase("backward"):
                    squares = self.supervision.squares(energy_error, force_error, weights)[0]
                    part = self.supervision.part_loss(squares, totals, scale)
                    if part.requires_grad:
                        part.backward()
                after_batch()
            self.ranks.sum_gradients(parameters)
            if not first:
                first.append(sums)
            return torch.tensor(self.supervision.pooled_loss(totals, scale), dtype=torch.float64)

        with self.timer.phase("optimizer"):
            self.optimizer.step(closure)
            if self.average is not None:
                self.average.update()
        return first[0]

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

    def _backward(self, energy_error: torch.Tensor, force_error: torch.Tensor | None, weights: BatchWeights | None) -> None:
        """Gradients of the batch's loss: in one process directly, over ranks through each rank's part, summed."""
        scale = self.scale
        if self.ranks.size == 1:
            self.supervision.batch_loss(energy_error, force_error, scale, weights).backward()
            return
        loss = self.supervision.rank_loss(energy_error, force_error, scale, self.ranks, weights)
        if loss.requires_grad:
            loss.backward()
        self.ranks.sum_gradients([p for group in self.optimizer.param_groups for p in group["params"]])

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
