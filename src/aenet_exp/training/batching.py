"""Batches of graphs: built in DataLoader workers, with neighbour and triplet lists cached per the caching flags.

The trainer plans every epoch's batches in the main process; a :class:`BatchRequests` sampler
hands each planned batch to a worker as one request naming the structures that need a graph
with forces and those that need one without. Structures whose features (energy only) or
feature derivatives (forces) are cached need none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from aenet_exp.data import Structure
from aenet_exp.descriptor import (
    AtomGraph,
    ChebyshevDescriptor,
    Pairs,
    Triplets,
    build_graph,
    collate_graphs,
    find_pairs,
)
from aenet_exp.training.persist import DiskCache, structure_digest


@dataclass(frozen=True)
class BatchRequest:
    """One planned batch: the structures that need a graph built."""

    force_indices: tuple[int, ...]  # supervised on forces, derivatives not cached: graph with gradients
    energy_indices: tuple[int, ...]  # energy only, features not cached: graph without gradients


@dataclass
class BuiltBatch:
    request: BatchRequest
    force_graph: AtomGraph | None  # graph of request.force_indices
    energy_graph: AtomGraph | None  # graph of request.energy_indices
    reference_forces: torch.Tensor | None  # (n_force_atoms, 3) eV/Å of request.force_indices


class GraphDataset(Dataset):
    """Builds graphs of structures for a descriptor's cutoffs.

    ``cache_neighbors`` keeps each structure's pair list (triplets rebuilt from it);
    ``cache_triplets`` keeps the whole graph. Only structures in ``cacheable`` are kept.
    Caches live in the process that builds (each DataLoader worker has its own); with
    ``persist_dir`` they are also stored on disk and read back by later runs.
    """

    def __init__(
        self,
        structures: Sequence[Structure],
        descriptor: ChebyshevDescriptor,
        cache_neighbors: bool,
        cache_triplets: bool,
        cacheable: set[int],
        persist_dir: str | None = None,
    ):
        self.structures = structures
        self.species = list(descriptor.species)
        self.cutoffs = (descriptor.rad_cutoff, descriptor.ang_cutoff, descriptor.min_cutoff)
        self.cache_neighbors = cache_neighbors
        self.cache_triplets = cache_triplets
        self.cacheable = cacheable
        self.neighbor_cache: dict[int, tuple[Pairs, np.ndarray]] = {}
        self.graph_cache: dict[int, AtomGraph] = {}
        depends_on = "graph|rad={}|ang={}|min={}".format(*self.cutoffs)
        self.disk = DiskCache(persist_dir, "graphs", depends_on) if persist_dir else None

    def graph(self, index: int) -> AtomGraph:
        """The graph of structure ``index``, from the caches where allowed."""
        if self.cache_triplets and index in self.cacheable:
            if index not in self.graph_cache:
                self.graph_cache[index] = self._build(index, *self._lists(index))
            return self.graph_cache[index]
        if self.cache_neighbors and index in self.cacheable:
            if index not in self.neighbor_cache:
                self.neighbor_cache[index] = self._lists(index)[0]
            return self._build(index, self.neighbor_cache[index])
        return self._build(index, self._search(index))

    def _search(self, index: int) -> tuple[Pairs, np.ndarray]:
        rad, ang, minimum = self.cutoffs
        return find_pairs(self.structures[index], max(rad, ang), minimum)

    def _build(self, index: int, neighbors: tuple[Pairs, np.ndarray], triplets: Triplets | None = None) -> AtomGraph:
        rad, ang, minimum = self.cutoffs
        return build_graph(self.structures[index], self.species, rad, ang, minimum, neighbors, triplets)

    def _lists(self, index: int) -> tuple[tuple[Pairs, np.ndarray], Triplets]:
        """``((pairs, distances), triplets)`` of a structure: read from ``persist_dir`` when stored, else built."""
        digest = structure_digest(self.structures[index]) if self.disk else ""
        stored = self.disk.load(digest) if self.disk else None
        if stored is not None:
            pairs = Pairs(*(torch.from_numpy(stored[k]) for k in PAIR_KEYS))
            return (pairs, stored["distances"]), Triplets(*(torch.from_numpy(stored[k]) for k in TRIPLET_KEYS))
        neighbors = self._search(index)
        triplets = self._build(index, neighbors).triplets
        if self.disk:
            arrays = {k: v.numpy() for k, v in zip(PAIR_KEYS + TRIPLET_KEYS, (*neighbors[0], *triplets))}
            self.disk.save(digest, arrays | {"distances": neighbors[1]})
        return neighbors, triplets

    def fresh_graph(self, index: int) -> AtomGraph:
        """The graph of structure ``index`` built anew, not kept in any cache."""
        return self._build(index, self._search(index))

    def batch_graph(self, indices: Sequence[int]) -> AtomGraph | None:
        return collate_graphs([self.graph(i) for i in indices]) if indices else None

    def __getitem__(self, request: BatchRequest) -> BuiltBatch:
        forces = [torch.from_numpy(self.structures[i].forces) for i in request.force_indices]
        return BuiltBatch(
            request,
            self.batch_graph(request.force_indices),
            self.batch_graph(request.energy_indices),
            torch.cat(forces) if forces else None,
        )

    def __len__(self) -> int:
        return len(self.structures)


PAIR_KEYS = ("center", "neighbor", "shift")
TRIPLET_KEYS = ("triplet_center", "pair_a", "pair_b")


class BatchRequests(Sampler):
    """Yields the current plan's batches as one-request lists; the plan is replaced before each pass."""

    def __init__(self):
        self.plan: list[np.ndarray] = []
        self.needs_forces: Callable[[int], bool] = lambda i: False
        self.needs_graph: Callable[[int], bool] = lambda i: True

    def set_plan(self, batches: list[np.ndarray], needs_forces: Callable[[int], bool], needs_graph: Callable[[int], bool]):
        self.plan, self.needs_forces, self.needs_graph = batches, needs_forces, needs_graph

    def __iter__(self):
        for batch in self.plan:
            needing = [int(i) for i in batch if self.needs_graph(int(i))]
            force = tuple(i for i in needing if self.needs_forces(i))
            energy = tuple(i for i in needing if not self.needs_forces(i))
            yield [BatchRequest(force, energy)]

    def __len__(self) -> int:
        return len(self.plan)


def single(items: list[BuiltBatch]) -> BuiltBatch:
    """collate_fn: each sampled 'batch' is one request already built into a batch."""
    return items[0]


def single_threaded_worker(worker_id: int) -> None:
    """Workers build graphs with one torch thread each, leaving the cores to the main process."""
    torch.set_num_threads(1)


def make_loader(
    dataset: GraphDataset, requests: BatchRequests, num_workers: int = 0, prefetch_factor: int = 2,
    persistent_workers: bool = True,
) -> DataLoader:
    """A DataLoader over planned batch requests; its arguments are the ``dataloader.*`` keys."""
    workers = (
        dict(prefetch_factor=prefetch_factor, persistent_workers=persistent_workers, worker_init_fn=single_threaded_worker)
        if num_workers > 0
        else {}
    )
    return DataLoader(dataset, batch_sampler=requests, collate_fn=single, num_workers=num_workers, **workers)


def plan_batches(indices: np.ndarray, batchsize: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Split ``indices`` into batches of ``batchsize``, shuffled when ``rng`` is given."""
    order = rng.permutation(indices) if rng is not None else np.asarray(indices)
    return [order[k : k + batchsize] for k in range(0, len(order), batchsize)]


def atoms_per_structure(graph: AtomGraph) -> torch.Tensor:
    """``(n_structures,)`` atom counts of a batch graph."""
    return torch.bincount(graph.structure, minlength=graph.n_structures)
