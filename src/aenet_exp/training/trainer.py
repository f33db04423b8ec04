"""The epoch loop: loss = (1 − α)·RMSE(E/atom) + α·RMSE(F) in normalised units, errors pooled per epoch."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from aenet_exp.descriptor import AtomGraph
from aenet_exp.model import Potential, forces_from_energy, forces_from_jacobian
from aenet_exp.training.batching import BatchRequests, BuiltBatch, GraphDataset, make_loader, plan_batches
from aenet_exp.training.columns import Columns
from aenet_exp.training.dataset import PreparedData
from aenet_exp.training.distributed import SINGLE, Ranks
from aenet_exp.training.events import Predictions
from aenet_exp.training.features import DerivativeCache, FeatureBlock, FeatureCache, concat_blocks
from aenet_exp.training.persist import DiskCache
from aenet_exp.training.sampling import ForceSampler
from aenet_exp.training.schedule import EpochSchedule, WeightAverage
from aenet_exp.training.timing import PhaseTimer


@dataclass
class Labels:
    """Energy targets of all structures in normalised units, placed per ``precision.memory_mode``.

    ``offset`` (float64, host) holds what normalisation takes away: ``N·shift + Σ E_atomic``.
    Reference forces travel with each batch (read where the batch is built).
    """

    target: torch.Tensor  # (n_structures,) ((E − offset) / N) / scale, per atom, normalised
    n_atoms: torch.Tensor  # (n_structures,)
    offset: np.ndarray  # (n_structures,) eV

    @classmethod
    def of(cls, columns: Columns, references: dict | None, shift: float, scale: float,
           dtype: torch.dtype, device: torch.device) -> "Labels":
        """Targets computed in float64 before the cast, so large total energies cancel exactly."""
        offset = columns.n_atoms * shift + columns.reference_energy(references)
        target = (columns.energy - offset) / (columns.n_atoms * scale)
        return cls(
            torch.as_tensor(target, dtype=dtype, device=device), torch.as_tensor(columns.n_atoms, device=device), offset
        )


@dataclass
class BatchOutput:
    order: list[int]  # structure indices in the order of ``energies``
    energies: torch.Tensor  # (n,) normalised energies Σ_i net(f̂_i)
    force_indices: list[int]
    forces: torch.Tensor | None  # (n_force_atoms, 3) eV/Å of force_indices, atoms concatenated
    reference_forces: torch.Tensor | None  # the same atoms' reference forces


class ErrorSums:
    """Errors pooled over an epoch: per-atom energies (eV/atom) and force components (eV/Å), squared and absolute."""

    def __init__(self):
        self.energy_sq, self.energy_abs, self.energy_n = 0.0, 0.0, 0
        self.force_sq, self.force_abs, self.force_n = 0.0, 0.0, 0

    def add(self, energy_error: torch.Tensor, force_error: torch.Tensor | None) -> None:
        energy_error = energy_error.detach()
        self.energy_sq += float(energy_error.square().sum())
        self.energy_abs += float(energy_error.abs().sum())
        self.energy_n += energy_error.numel()
        if force_error is not None:
            force_error = force_error.detach()
            self.force_sq += float(force_error.square().sum())
            self.force_abs += float(force_error.abs().sum())
            self.force_n += force_error.numel()

    def sum_over(self, ranks: Ranks, device: torch.device) -> None:
        """Add these sums over ranks, in place: every rank then holds the errors of all ranks' structures."""
        if ranks.size == 1:
            return
        values = [self.energy_sq, self.energy_abs, self.energy_n, self.force_sq, self.force_abs, self.force_n]
        totals = ranks.sum(torch.tensor(values, dtype=torch.float64, device=device)).tolist()
        e_sq, e_abs, e_n, f_sq, f_abs, f_n = totals
        self.energy_sq, self.energy_abs, self.energy_n = e_sq, e_abs, int(e_n)
        self.force_sq, self.force_abs, self.force_n = f_sq, f_abs, int(f_n)

    def energy_rmse(self) -> float:
        return math.sqrt(self.energy_sq / self.energy_n) if self.energy_n else float("nan")

    def force_rmse(self) -> float | None:
        return math.sqrt(self.force_sq / self.force_n) if self.force_n else None

    def metrics(self, prefix: str) -> dict[str, float]:
        """``{prefix}/energy_rmse``, ``energy_mae`` (eV/atom) and, with forces, ``force_rmse``, ``force_mae``
        (per component) and ``force_rmse_vector`` (RMS of |ΔF|, √3 × the per-component RMSE), eV/Å."""
        metrics = {f"{prefix}/energy_rmse": self.energy_rmse(), f"{prefix}/energy_mae": self.energy_abs / max(self.energy_n, 1)}
        if self.force_n:
            metrics |= {
                f"{prefix}/force_rmse": self.force_rmse(),
                f"{prefix}/force_rmse_vector": math.sqrt(3.0) * self.force_rmse(),
                f"{prefix}/force_mae": self.force_abs / self.force_n,
            }
        return metrics


class Trainer:
    """Trains ``potential`` on ``structures[train]`` and evaluates on ``structures[test]``.

    Args:
        settings: the composed config (``force``, ``caching``, ``dataloader``, ``optimizer``, ``tracking``).
        storage: ``(label_device, feature_device)`` chosen by ``precision.memory_mode``.
        ranks: the training processes (``distributed=ddp``): each builds and featurises its share of
            every batch and of the test set; errors and gradients are summed over ranks.
    """

    def __init__(
        self,
        potential: Potential,
        data: PreparedData,
        settings,
        device: torch.device,
        storage: tuple[torch.device, torch.device],
        ranks: Ranks = SINGLE,
    ):
        self.potential = potential
        self.ranks = ranks
        structures = self.structures = data.structures
        self.columns = data.columns
        self.train_idx, self.test_idx = np.asarray(data.train), np.asarray(data.test)
        seed = settings.seed
        self.cfg = settings
        self.device = device
        self.dtype = potential.descriptor.dtype
        self.alpha = float(settings.force.weight)
        self.label_device = storage[0]
        self.labels: Labels | None = None  # set_targets, once the normalisation is fitted
        caching = settings.caching
        cacheable = self._scope(caching.scope)
        descriptor = potential.descriptor
        feature_disk = None
        if caching.persist_dir:
            depends_on = f"features|{sorted(descriptor.settings().items())}|{self.dtype}"
            feature_disk = DiskCache(caching.persist_dir, "features", depends_on)
        self.features = FeatureCache(cacheable, storage[1], structures, descriptor.species, feature_disk)
        self.feature_caching = caching.features or caching.features_for_force
        self.derivatives = DerivativeCache(cacheable, storage[1], descriptor) if caching.derivatives else None
        self.dataset = GraphDataset(
            structures, descriptor, caching.neighbors, caching.triplets, cacheable, caching.persist_dir
        )
        self.requests = BatchRequests()
        loader = settings.dataloader
        self.loader = make_loader(
            self.dataset, self.requests, loader.num_workers, loader.prefetch_factor, loader.persistent_workers
        )
        with_forces = self.train_idx[data.columns.has_forces[self.train_idx]]
        f = settings.force
        self.sampler = ForceSampler(
            with_forces, f.fraction, f.sampling, f.resample_each_epoch, f.min_structures_per_epoch,
            f.epochs_per_window, seed + 1,
        )
        self.force_factor = math.sqrt(1.0 / f.fraction) if f.scale_unbiased else 1.0
        self.shuffle = np.random.default_rng(seed + 2)
        self.timer = PhaseTimer(settings.tracking.timing, device)
        self.optimizer = build_optimizer(potential, settings.optimizer)
        self.schedule = EpochSchedule(self.optimizer, settings.scheduler, settings.iterations)
        decay = settings.ema.decay
        self.average = WeightAverage(potential, decay) if decay is not None else None

    def set_targets(self, references: dict | None) -> None:
        """Normalised energy targets from the potential's fitted shift and scale (call after normalising)."""
        shift, scale = float(self.potential.energy_shift), float(self.potential.energy_scale)
        self.labels = Labels.of(self.columns, references, shift, scale, self.dtype, self.label_device)

    def state(self) -> dict:
        """Optimiser, random generators, force subset and split: what a checkpoint needs to continue exactly."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "shuffle": self.shuffle.bit_generator.state,
                "sampler": self.sampler.rng.bit_generator.state,
            },
            "sampler": {"selected": sorted(self.sampler.selected), "window": self.sampler.window},
            "split": {"train": torch.from_numpy(self.train_idx), "test": torch.from_numpy(self.test_idx)},
            "schedule": self.schedule.state_dict(),
            "average": self.average.state_dict() if self.average is not None else None,
        }

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`state`; the data must split exactly as it did."""
        split = state["split"]
        if not (np.array_equal(split["train"].numpy(), self.train_idx) and np.array_equal(split["test"].numpy(), self.test_idx)):
            raise ValueError("the data no longer splits as it did when the checkpoint was written (changed files?)")
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        self.shuffle.bit_generator.state = state["rng"]["shuffle"]
        self.sampler.rng.bit_generator.state = state["rng"]["sampler"]
        self.sampler.selected = frozenset(state["sampler"]["selected"])
        self.sampler.window = state["sampler"]["window"]
        self.schedule.load_state_dict(state["schedule"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])

    def _scope(self, scope: str) -> set[int]:
        parts = {"train": [self.train_idx], "val": [self.test_idx], "all": [self.train_idx, self.test_idx]}[scope]
        return {int(i) for part in parts for i in part}

    # ------------------------------------------------------------------ batches

    def _batches(self, batches: list[np.ndarray], force_set: frozenset[int]):
        """Built batches for a plan; structures in ``force_set`` get a graph for forces."""
        self.requests.set_plan(
            batches,
            needs_forces=lambda i: i in force_set,
            needs_graph=lambda i: not self._served_from_cache(i, i in force_set),
        )
        iterator = iter(self.loader)
        for batch in batches:
            with self.timer.phase("data"):
                built: BuiltBatch = next(iterator)
            yield batch, built

    def _served_from_cache(self, index: int, with_forces: bool) -> bool:
        """Whether structure ``index`` needs no graph: its derivatives (forces) or features (energy) are kept."""
        if with_forces:
            return self.derivatives is not None and self.derivatives.serves(index)
        return self.feature_caching and index in self.features

    def _derivative_forces(self, indices: list[int], create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised energies, forces (eV/Å) and reference forces of ``indices`` through cached Jacobians."""
        for index in indices:
            if index not in self.derivatives:
                with self.timer.phase("featurize"):
                    graph = self.dataset.fresh_graph(index).to(self.device, self.dtype)
                    self.derivatives.add(index, graph, torch.from_numpy(self.structures[index].forces))
        with self.timer.phase("data"):
            block, jacobian, reference = self.derivatives.batch(indices)
        features = block.features.to(self.device, self.dtype).requires_grad_(True)
        with torch.enable_grad(), self.timer.phase("forward"):
            energy = self.potential.normalized_energy(
                features, block.species.to(self.device), block.structure.to(self.device), block.n_structures
            )
            forces = forces_from_jacobian(
                self.potential.energy_scale * energy, features, jacobian.to(self.device, self.dtype), create_graph
            )
        return energy, forces, reference.to(self.device, self.dtype)

    def _energy_block(
        self, batch: np.ndarray, built: BuiltBatch, force_set: frozenset[int]
    ) -> tuple[list[int], FeatureBlock | None]:
        """Features of the batch's energy-only structures: computed (and cached) or taken from the cache."""
        blocks, order = [], []
        if built.energy_graph is not None:
            graph = built.energy_graph.to(self.device, self.dtype)
            indices = list(built.request.energy_indices)
            with self.timer.phase("featurize"), torch.no_grad():
                features = self.potential.descriptor(graph)
            if self.feature_caching:
                self.features.store(indices, graph, features)
            blocks.append(FeatureBlock(features, graph.species, graph.structure, graph.n_structures))
            order += indices
        built_now = set(built.request.force_indices) | set(built.request.energy_indices)
        cached = [i for i in map(int, batch) if i not in built_now and i not in force_set]
        if cached:
            block = self.features.block(cached)
            blocks.append(FeatureBlock(block.features.to(self.device, self.dtype), block.species.to(self.device),
                                       block.structure.to(self.device), block.n_structures))
            order += cached
        return order, (concat_blocks(blocks) if blocks else None)

    def _predict(self, batch: np.ndarray, built: BuiltBatch, force_set: frozenset[int], create_graph: bool) -> BatchOutput:
        """Energies of every structure of the batch, forces of those in ``force_set``."""
        order, energies, forces, references = [], [], [], []
        if built.force_graph is not None:
            graph: AtomGraph = built.force_graph.to(self.device, self.dtype)
            positions = graph.positions.detach().requires_grad_(True)
            with torch.enable_grad():
                with self.timer.phase("featurize"):
                    features = self.potential.descriptor(graph._replace(positions=positions))
                with self.timer.phase("forward"):
                    energy = self.potential.normalized_energy(features, graph.species, graph.structure, graph.n_structures)
                    forces.append(forces_from_energy(self.potential.energy_scale * energy, positions, create_graph))
            order += built.request.force_indices
            energies.append(energy)
            references.append(built.reference_forces.to(self.device, self.dtype))
        from_cache = [int(i) for i in batch if int(i) in force_set and int(i) not in built.request.force_indices]
        if from_cache:
            energy, force, reference = self._derivative_forces(from_cache, create_graph)
            order += from_cache
            energies.append(energy)
            forces.append(force)
            references.append(reference)
        force_indices = list(order)
        energy_order, block = self._energy_block(batch, built, force_set)
        if block is not None:
            with self.timer.phase("forward"), torch.set_grad_enabled(self.potential.training):
                energies.append(self.potential.normalized_energy(*block))
            order += energy_order
        return BatchOutput(
            order, torch.cat(energies), force_indices,
            torch.cat(forces) if forces else None, torch.cat(references) if references else None,
        )

    def _errors(self, out: BatchOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-atom energy errors ``(n,)`` eV/atom and force errors ``(n_force_atoms, 3)`` eV/Å."""
        order = torch.tensor(out.order, device=self.labels.target.device)
        target = self.labels.target[order].to(self.device)
        n_atoms = self.labels.n_atoms[order].to(self.device)
        energy_error = self.potential.energy_scale * (out.energies / n_atoms - target)
        if out.forces is None:
            return energy_error, None
        return energy_error, out.forces - out.reference_forces

    def _loss(self, energy_error: torch.Tensor, force_error: torch.Tensor | None) -> torch.Tensor:
        """The batch's loss (:meth:`pooled_loss`) of its errors ``(n,)`` eV/atom and ``(n_force_atoms, 3)`` eV/Å."""
        rmse = lambda error: error.square().mean().sqrt()  # noqa: E731
        return self.pooled_loss(rmse(energy_error), rmse(force_error) if force_error is not None else None)

    def _rank_loss(self, energy_error: torch.Tensor, force_error: torch.Tensor | None) -> torch.Tensor:
        """This rank's part ``L_r`` of the batch's loss ``L`` (:meth:`_loss`): ``Σ_r ∂L_r/∂θ = ∂L/∂θ``.

        An RMSE is not a sum over ranks, but its gradient is: with the squared-error sum ``S`` and
        count ``N`` added over ranks (detached), ``∂sqrt(S/N)/∂θ = (∂S/∂θ) / (2·sqrt(S·N))``. So
        ``L_r = c_E·S_E,r + c_F·S_F,r`` with ``c_E = (1 − α) / (2·scale·sqrt(S_E·N_E))`` and
        ``c_F = α·factor / (2·scale·sqrt(S_F·N_F))``; an empty share gives a constant zero.
        """
        if force_error is None or self.alpha == 0:
            force_error = energy_error.new_zeros((0, 3))
        squares = torch.stack([energy_error.square().sum(), force_error.square().sum()])
        counts = torch.tensor([energy_error.numel(), force_error.numel()], dtype=torch.float64, device=squares.device)
        s_e, s_f, n_e, n_f = self.ranks.sum(torch.cat([squares.detach().double(), counts])).tolist()
        scale = float(self.potential.energy_scale)
        weights = [
            (1 - self.alpha) / (2 * scale * math.sqrt(s_e * n_e)) if s_e > 0 else 0.0,
            self.alpha * self.force_factor / (2 * scale * math.sqrt(s_f * n_f)) if s_f > 0 else 0.0,
        ]
        return (squares * squares.new_tensor(weights)).sum()

    def _backward(self, energy_error: torch.Tensor, force_error: torch.Tensor | None) -> None:
        """Gradients of the batch's loss: of :meth:`_loss` in one process, of :meth:`_rank_loss` summed over ranks."""
        if self.ranks.size == 1:
            self._loss(energy_error, force_error).backward()
            return
        loss = self._rank_loss(energy_error, force_error)
        if loss.requires_grad:
            loss.backward()
        self.ranks.sum_gradients([p for group in self.optimizer.param_groups for p in group["params"]])

    def pooled_loss(self, energy_rmse, force_rmse):
        """(1 − α)·RMSE(E/atom) + α·RMSE(F)·factor, both divided by the energy scale (normalised units).

        The RMSEs (eV/atom, eV/Å; floats, or tensors for a loss to back-propagate) are pooled over
        a batch or an epoch.
        """
        scale = float(self.potential.energy_scale)
        loss = (1 - self.alpha) * energy_rmse / scale
        if force_rmse is not None and self.alpha > 0:
            loss = loss + self.alpha * self.force_factor * force_rmse / scale
        return loss

    # ------------------------------------------------------------------ epochs

    def feature_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std ``(n_features,)`` of raw features over training atoms (float64 sums; ranks take every
        ``size``-th batch and add their sums)."""
        n = self.potential.descriptor.n_features
        total, sq = (torch.zeros(n, dtype=torch.float64, device=self.device) for _ in range(2))
        count = 0
        batches = plan_batches(self.train_idx, self.cfg.optimizer.batchsize, None)[self.ranks.rank :: self.ranks.size]
        for batch, built in self._batches(batches, frozenset()):
            _, block = self._energy_block(batch, built, frozenset())
            f = block.features.double()
            total, sq, count = total + f.sum(0), sq + f.square().sum(0), count + f.shape[0]
        sums = self.ranks.sum(torch.cat([total, sq, total.new_tensor([count])]))
        total, sq, count = sums[:n], sums[n : 2 * n], sums[2 * n]
        mean = (total / count).cpu().numpy()
        var = np.maximum((sq / count).cpu().numpy() - mean**2, 0.0)
        std = np.sqrt(var)
        return mean, np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)

    def train_epoch(self, epoch: int, progress=None) -> dict[str, float]:
        """One pass over the training set; returns pooled ``train/*`` metrics and ``time/*`` seconds."""
        self.potential.train()
        force_set = frozenset()
        if self.alpha > 0:
            force_set, redrawn = self.sampler.select(epoch)
            if redrawn and self.cfg.caching.features_for_force:
                self.features.discard(force_set)  # supervised on forces in this window: features come with gradients
        batches = plan_batches(self.train_idx, self.cfg.optimizer.batchsize, self.shuffle)
        shares = [self.ranks.share(batch, self.columns.n_atoms) for batch in batches]
        sums = ErrorSums()
        for batch, built in self._batches(shares, force_set):
            if len(batch):
                energy_error, force_error = self._errors(self._predict(batch, built, force_set, create_graph=True))
            else:  # this rank's share of the batch is empty: it adds nothing but joins every sum
                energy_error, force_error = torch.zeros(0, dtype=self.dtype, device=self.device), None
            with self.timer.phase("backward"):
                self.optimizer.zero_grad(set_to_none=True)
                self._backward(energy_error, force_error)
            with self.timer.phase("optimizer"):
                self.optimizer.step()
                if self.average is not None:
                    self.average.update()
            sums.add(energy_error, force_error)
            if progress is not None:
                progress.update(1)
        sums.sum_over(self.ranks, self.device)
        metrics = {"train/loss": self.pooled_loss(sums.energy_rmse(), sums.force_rmse()), **sums.metrics("train")}
        metrics["train/lr"] = self.schedule.learning_rate()
        if self.derivatives is not None:
            metrics["memory/derivative_cache_mb"] = self.derivatives.nbytes / 2**20
        return metrics

    def predict(self, indices: np.ndarray, with_forces: bool) -> Predictions:
        """Energies (and forces of force-labelled structures when ``with_forces``) of ``indices``."""
        self.potential.eval()
        force_set = frozenset(int(i) for i in indices if with_forces and self.columns.has_forces[i])
        energies: dict[int, float] = {}
        forces: dict[int, np.ndarray] = {}
        for batch, built in self._batches(plan_batches(indices, self.cfg.optimizer.batchsize, None), force_set):
            out = self._predict(batch, built, force_set, create_graph=False)
            energies.update(zip(out.order, out.energies.detach().cpu().double().tolist()))
            if out.forces is not None:
                split_at = np.cumsum(self.columns.n_atoms[out.force_indices])[:-1]
                predicted = np.split(out.forces.detach().cpu().double().numpy(), split_at)
                reference = np.split(out.reference_forces.detach().cpu().double().numpy(), split_at)
                forces.update(zip(out.force_indices, zip(reference, predicted)))
        indices = np.asarray(indices, dtype=int)
        normalised = np.array([energies[int(i)] for i in indices])
        return Predictions(
            indices=indices,
            energy_ref=self.columns.energy[indices],
            energy_pred=self.labels.offset[indices] + float(self.potential.energy_scale) * normalised,
            n_atoms=self.columns.n_atoms[indices],
            force_ref=[forces[int(i)][0] if int(i) in forces else None for i in indices],
            force_pred=[forces[int(i)][1] if int(i) in forces else None for i in indices],
        )

    def test_metrics(self) -> dict[str, float]:
        """Pooled ``test/*`` errors and loss of the evaluated weights (forces when training on forces).

        Each rank predicts its share of the test set (balanced by atoms); the error sums are added over ranks.
        """
        if len(self.test_idx) == 0:
            return {}
        share = self.ranks.share(self.test_idx, self.columns.n_atoms)
        with self.evaluated_weights():
            sums = error_sums(self.predict(share, with_forces=self.alpha > 0))
        sums.sum_over(self.ranks, self.device)
        metrics = sums.metrics("test")
        metrics["test/loss"] = self.pooled_loss(metrics["test/energy_rmse"], metrics.get("test/force_rmse"))
        return metrics

    def evaluated_weights(self):
        """Context in which the potential carries the weights that are evaluated and kept (the average, with EMA)."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def kept_weights(self) -> dict[str, torch.Tensor]:
        """The state dict evaluated by :meth:`evaluated_weights`."""
        return self.average.weights() if self.average is not None else self.potential.state_dict()


def error_sums(predictions: Predictions) -> ErrorSums:
    """The pooled errors of ``predictions`` (eV/atom, eV/Å)."""
    sums = ErrorSums()
    ref, pred = predictions.energy_per_atom()
    f_ref, f_pred = predictions.force_components()
    sums.add(torch.from_numpy(pred - ref), torch.from_numpy(f_pred - f_ref) if f_ref.size else None)
    return sums


def metrics_of(predictions: Predictions, prefix: str) -> dict[str, float]:
    """Pooled errors of ``predictions`` as :meth:`ErrorSums.metrics` names them (eV/atom, eV/Å)."""
    return error_sums(predictions).metrics(prefix)


def build_optimizer(potential: Potential, cfg) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over the network weights with every ``optimizer.*`` parameter.

    ``foreach``: one fused update over all (many, small) weight tensors, also on CPU, where torch
    would otherwise update them one by one.
    """
    params = potential.networks.parameters()
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)
    kind = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return kind(
        params, lr=cfg.mu, betas=(cfg.beta1, cfg.beta2), eps=cfg.epsilon, weight_decay=cfg.weight_decay, foreach=True
    )
