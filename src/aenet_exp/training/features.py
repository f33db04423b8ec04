"""Where a batch's energies and forces come from: graphs under autograd, kept features, kept feature Jacobians.

Every ``caching`` key ends here: :class:`FeatureSource` takes them as its arguments and chooses,
once, which caches it keeps; the trainer only asks it for each batch's outputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from aenet_exp.data import Structure
from aenet_exp.descriptor.blocks import FeatureBlock, block_of, concat_blocks
from aenet_exp.descriptor.chebyshev import ChebyshevDescriptor
from aenet_exp.descriptor.derivatives import FeatureJacobian, concat_jacobians, feature_jacobian, tensor_bytes
from aenet_exp.descriptor.graph import AtomGraph, species_indices
from aenet_exp.evaluation.predictions import BatchOutput
from aenet_exp.model.forces import GraphInputs, JacobianInputs, evaluate
from aenet_exp.model.potential import Potential
from aenet_exp.training.batching import BatchRequests, BuiltBatch, GraphDataset, atoms_per_structure, make_loader
from aenet_exp.training.persist import DiskCache, structure_digest
from aenet_exp.training.timing import PhaseTimer


class FeatureCache:
    """Per-structure features (no gradients) of the structures in ``cacheable``, on ``device``.

    With ``disk`` the features are also stored there and read back by later runs.
    """

    def __init__(
        self,
        cacheable: set[int],
        device: torch.device,
        structures: Sequence[Structure],
        species_order: Sequence[str],
        disk: DiskCache | None = None,
    ):
        self.cacheable = cacheable
        self.device = device
        self.structures = structures
        self.species_order = list(species_order)
        self.disk = disk
        self.entries: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.digests: dict[int, str] = {}
        self.on_disk: set[int] = set()  # read back from disk (no need to write)

    def _digest(self, index: int) -> str:
        if index not in self.digests:
            self.digests[index] = structure_digest(self.structures[index])
        return self.digests[index]

    def __contains__(self, index: int) -> bool:
        """Whether features of ``index`` are at hand; an entry on disk is read into memory here."""
        if index in self.entries:
            return True
        if self.disk is None or index not in self.cacheable:
            return False
        stored = self.disk.load(self._digest(index))
        if stored is None:
            return False
        species = species_indices(self.structures[index].species, self.species_order)
        self.entries[index] = (torch.from_numpy(stored["features"]).to(self.device), species.to(self.device))
        self.on_disk.add(index)
        return True

    def discard(self, indices: frozenset[int]) -> None:
        """Forget the in-memory entries of ``indices`` (entries on disk stay: features never go stale)."""
        for index in indices:
            self.entries.pop(index, None)

    def store(self, indices: Sequence[int], graph: AtomGraph, features: torch.Tensor) -> None:
        """Keep the rows of ``features`` ``(n_atoms, n_features)`` of each cacheable structure of ``graph``."""
        counts = atoms_per_structure(graph).tolist()
        for index, rows, species in zip(indices, features.split(counts), graph.species.split(counts)):
            if index in self.cacheable:
                self.entries[index] = (rows.detach().to(self.device), species.to(self.device))
                if self.disk is not None and index not in self.on_disk:
                    self.disk.save(self._digest(index), {"features": rows.detach().cpu().numpy()})

    def block(self, indices: Sequence[int]) -> FeatureBlock:
        """The cached features of ``indices`` (each checked with ``in`` first) as one block."""
        return block_of([self.entries[i] for i in indices], self.device)


class DerivativeEntry(NamedTuple):
    """What force training needs of one structure of fixed geometry (``caching.derivatives``)."""

    features: torch.Tensor  # (n_atoms, n_features)
    species: torch.Tensor  # (n_atoms,)
    jacobian: FeatureJacobian  # ∂features/∂positions, sparse
    reference_forces: torch.Tensor  # (n_atoms, 3) eV/Å

    @property
    def nbytes(self) -> int:
        return self.jacobian.nbytes + tensor_bytes((self.features, self.species, self.reference_forces))


class DerivativeCache:
    """Features and their sparse Jacobian w.r.t. positions of the structures in ``cacheable``, on ``device``.

    While ``growing`` every cacheable structure is served (its entry computed on first use);
    afterwards only those already kept.
    """

    def __init__(self, cacheable: set[int], device: torch.device, descriptor: ChebyshevDescriptor):
        self.cacheable = cacheable
        self.device = device
        self.descriptor = descriptor
        self.entries: dict[int, DerivativeEntry] = {}
        self.growing = True

    def __contains__(self, index: int) -> bool:
        return index in self.entries

    def serves(self, index: int) -> bool:
        """Whether forces of structure ``index`` come from this cache (no graph needed)."""
        return index in (self.cacheable if self.growing else self.entries)

    def add(self, index: int, graph: AtomGraph, reference_forces: torch.Tensor) -> None:
        """Compute and keep the entry of structure ``index`` from its (single-structure) ``graph``."""
        with torch.no_grad():
            features = self.descriptor(graph)
        jacobian = feature_jacobian(self.descriptor, graph)
        self.entries[index] = DerivativeEntry(
            features.to(self.device), graph.species.to(self.device), jacobian.to(self.device),
            reference_forces.to(self.device, features.dtype),
        )

    def batch(self, indices: Sequence[int]) -> tuple[FeatureBlock, FeatureJacobian, torch.Tensor]:
        """Features, Jacobian and reference forces of ``indices`` (all added), atoms concatenated."""
        entries = [self.entries[i] for i in indices]
        block = block_of([(e.features, e.species) for e in entries], self.device)
        jacobian = concat_jacobians([e.jacobian for e in entries], [len(e.species) for e in entries])
        return block, jacobian, torch.cat([e.reference_forces for e in entries])

    @property
    def nbytes(self) -> int:
        """Memory held by the cache, bytes."""
        return sum(e.nbytes for e in self.entries.values())


def cached_splits(scope: str, splits: Mapping[str, np.ndarray]) -> set[int]:
    """The structures ``caching.scope`` keeps: of the ``train`` split, the ``val`` (test) split, or ``all``."""
    parts = {"train": ["train"], "val": ["test"], "all": ["train", "test"]}[scope]
    return {int(i) for part in parts for i in splits[part]}


class FeatureSource:
    """Maps a planned batch to its energies, forces and reference forces, with the caches ``caching.*`` chose.

    Structures supervised on forces: their kept feature Jacobians (``derivatives``), else a graph
    featurised under autograd. Other structures: their kept features (``features``,
    ``features_for_force``), else a graph featurised without gradients (kept when caching
    features). Graphs keep their neighbour pairs (``neighbors``) or whole graph (``triplets``),
    also in ``persist_dir`` with the features. Only structures of ``scope`` are kept.

    ``auto`` keeps, besides what the flags ask, what cannot change results: the features of
    energy-only training; with ``force_training`` the features of structures not supervised on
    forces and, when ``jacobians_fit`` in memory, the feature Jacobians of those that are.

    Args (besides the ``caching`` keys):
        structures: the run's structures; ``splits``: ``{"train": indices, "test": indices}``.
        storage: where kept features and Jacobians live (``precision.memory_mode``).
        device, dtype: where and in what the networks are evaluated.
        loader: the ``dataloader`` keys (graphs are built in its worker processes).
        timer: the phase timer (data, featurize, forward).
    """

    def __init__(
        self,
        auto: bool = False,
        features: bool = False,
        features_for_force: bool = False,
        neighbors: bool = False,
        triplets: bool = False,
        persist_dir: str | None = None,
        derivatives: bool = False,
        scope: str = "all",
        *,
        structures: Sequence[Structure],
        descriptor: ChebyshevDescriptor,
        splits: Mapping[str, np.ndarray],
        storage: torch.device,
        device: torch.device,
        loader: Mapping[str, object],
        timer: PhaseTimer,
        force_training: bool = False,
        jacobians_fit: bool = False,
    ):
        if auto:  # what cannot change results, and fits: ``jacobians_fit`` (estimated by the caller)
            features = features or not force_training
            features_for_force = features_for_force or force_training
            derivatives = derivatives or (force_training and jacobians_fit)
        self.kept = [name for name, on in (("features", features), ("features_for_force", features_for_force),
                     ("neighbors", neighbors), ("triplets", triplets), ("derivatives", derivatives)) if on]
        self.structures = structures
        self.descriptor = descriptor
        self.device, self.dtype = device, descriptor.dtype
        self.timer = timer
        cacheable = cached_splits(scope, splits)
        self.graphs = GraphDataset(structures, descriptor, neighbors, triplets, cacheable, persist_dir)
        self.requests = BatchRequests()
        self.loader = make_loader(self.graphs, self.requests, **loader)
        keeps_features = features or features_for_force
        disk = None
        if keeps_features and persist_dir:
            disk = DiskCache(persist_dir, "features", f"features|{sorted(descriptor.settings().items())}|{self.dtype}")
        self.kept_features = FeatureCache(cacheable, storage, structures, descriptor.species, disk) if keeps_features else None
        self.kept_jacobians = DerivativeCache(cacheable, storage, descriptor) if derivatives else None

    # ------------------------------------------------------------------ what the trainer asks

    def outputs(
        self, potential: Potential, plan: list[np.ndarray], force_set: frozenset[int], create_graph: bool
    ) -> Iterator[tuple[np.ndarray, BatchOutput | None]]:
        """Each planned batch with its outputs (None for an empty batch: a rank's empty share).

        Energies of every structure, forces of those in ``force_set``; ``create_graph`` keeps the
        force graph for a force loss.
        """
        for batch, built in self._built(plan, force_set):
            yield batch, (self._evaluate(potential, batch, built, force_set, create_graph) if len(batch) else None)

    def raw_features(self, plan: list[np.ndarray]) -> Iterator[FeatureBlock]:
        """Raw features (no gradients) of each planned batch, kept where features are cached."""
        for batch, built in self._built(plan, frozenset()):
            yield self._energy_block(np.asarray(batch).tolist(), built, frozenset())[1]

    def forget_features(self, indices: frozenset[int]) -> None:
        """Structures now supervised on forces: their energy-only features must come with gradients."""
        if self.kept_features is not None:
            self.kept_features.discard(indices)

    def freeze(self) -> None:
        """Before a single final pass: keep using the Jacobians at hand, compute no new one (autograd once is cheaper)."""
        if self.kept_jacobians is not None:
            self.kept_jacobians.growing = False

    def close(self) -> None:
        """Stop the graph builders' worker processes now. (Left to the garbage collector, persistent
        DataLoader workers each wait out torch's 5 s join timeout.)"""
        self.loader = None

    def memory_metrics(self) -> dict[str, float]:
        """``memory/derivative_cache_mb`` when Jacobians are kept."""
        if self.kept_jacobians is None:
            return {}
        return {"memory/derivative_cache_mb": self.kept_jacobians.nbytes / 2**20}

    # ------------------------------------------------------------------ batches

    def _built(self, plan: list[np.ndarray], force_set: frozenset[int]) -> Iterator[tuple[np.ndarray, BuiltBatch]]:
        """Built batches for a plan; structures in ``force_set`` get a graph for forces."""
        self.requests.set_plan(
            plan,
            needs_forces=lambda i: i in force_set,
            needs_graph=lambda i: not self._served_from_cache(i, i in force_set),
        )
        iterator = iter(self.loader)
        for batch in plan:
            with self.timer.phase("data"):
                built: BuiltBatch = next(iterator)
            yield batch, built

    def _served_from_cache(self, index: int, with_forces: bool) -> bool:
        """Whether structure ``index`` needs no graph: its derivatives (forces) or features (energy) are kept."""
        if with_forces:
            return self.kept_jacobians is not None and self.kept_jacobians.serves(index)
        return self.kept_features is not None and index in self.kept_features

    def _evaluate(
        self, potential: Potential, batch: np.ndarray, built: BuiltBatch, force_set: frozenset[int], create_graph: bool
    ) -> BatchOutput:
        """Energies of every structure of the batch, forces of those in ``force_set``."""
        order, energies, forces, references = [], [], [], []
        members = np.asarray(batch).tolist()  # Python ints, once for the batch
        if built.force_graph is not None:
            graph = built.force_graph.to(self.device, self.dtype)
            with self.timer.phase("featurize"):
                inputs = GraphInputs(potential.descriptor, graph)
            with self.timer.phase("forward"):
                result = evaluate(potential, inputs, create_graph=create_graph, normalized=True)
            order += built.request.force_indices
            energies.append(result.energy)
            forces.append(result.forces)
            references.append(built.reference_forces.to(self.device, self.dtype))
        from_graph = set(built.request.force_indices)
        from_jacobians = [i for i in members if i in force_set and i not in from_graph]
        if from_jacobians:
            inputs, reference = self._jacobian_inputs(from_jacobians)
            with self.timer.phase("forward"):
                result = evaluate(potential, inputs, create_graph=create_graph, normalized=True)
            order += from_jacobians
            energies.append(result.energy)
            forces.append(result.forces)
            references.append(reference)
        force_indices = list(order)
        energy_order, block = self._energy_block(members, built, force_set)
        if block is not None:
            with self.timer.phase("forward"), torch.set_grad_enabled(potential.training):
                energies.append(potential.normalized_energy(*block))
            order += energy_order
        return BatchOutput(
            order, torch.cat(energies, dim=1), force_indices,
            torch.cat(forces, dim=1) if forces else None, torch.cat(references) if references else None,
        )

    def _jacobian_inputs(self, indices: list[int]) -> tuple[JacobianInputs, torch.Tensor]:
        """Kept features and Jacobians of ``indices`` (computed for those met the first time), and reference forces."""
        for index in indices:
            if index not in self.kept_jacobians:
                with self.timer.phase("featurize"):
                    graph = self.graphs.fresh_graph(index).to(self.device, self.dtype)
                    self.kept_jacobians.add(index, graph, torch.from_numpy(self.structures[index].forces))
        with self.timer.phase("data"):
            block, jacobian, reference = self.kept_jacobians.batch(indices)
        inputs = JacobianInputs(block.to(self.device, self.dtype), jacobian.to(self.device, self.dtype))
        return inputs, reference.to(self.device, self.dtype)

    def _energy_block(
        self, batch: list[int], built: BuiltBatch, force_set: frozenset[int]
    ) -> tuple[list[int], FeatureBlock | None]:
        """Features of the batch's energy-only structures: computed (and kept) or taken from the kept ones."""
        blocks, order = [], []
        if built.energy_graph is not None:
            graph = built.energy_graph.to(self.device, self.dtype)
            indices = list(built.request.energy_indices)
            with self.timer.phase("featurize"), torch.no_grad():
                features = self.descriptor(graph)
            if self.kept_features is not None:
                self.kept_features.store(indices, graph, features)
            blocks.append(FeatureBlock(features, graph.species, graph.structure, graph.n_structures))
            order += indices
        built_now = set(built.request.force_indices) | set(built.request.energy_indices)
        kept = [i for i in batch if i not in built_now and i not in force_set]
        if kept:
            blocks.append(self.kept_features.block(kept).to(self.device, self.dtype))
            order += kept
        return order, (concat_blocks(blocks) if blocks else None)
