"""Raw descriptor features of structures, and their derivatives, kept between batches (``caching.*``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from aenet_exp.data import Structure
from aenet_exp.descriptor import AtomGraph, ChebyshevDescriptor
from aenet_exp.descriptor.derivatives import FeatureJacobian, concat_jacobians, feature_jacobian, tensor_bytes
from aenet_exp.descriptor.graph import species_indices
from aenet_exp.training.batching import atoms_per_structure
from aenet_exp.training.persist import DiskCache, structure_digest


class FeatureBlock(NamedTuple):
    """Features of several structures, atoms concatenated."""

    features: torch.Tensor  # (n_atoms, n_features)
    species: torch.Tensor  # (n_atoms,) species index
    structure: torch.Tensor  # (n_atoms,) 0..n_structures-1
    n_structures: int


def block_of(rows: Sequence[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> FeatureBlock:
    """One block of per-structure ``(features (n_atoms, n_features), species (n_atoms,))``, in order."""
    counts = torch.tensor([len(species) for _, species in rows])
    structure = torch.repeat_interleave(torch.arange(len(rows)), counts).to(device)
    return FeatureBlock(torch.cat([f for f, _ in rows]), torch.cat([s for _, s in rows]), structure, len(rows))


def concat_blocks(blocks: Sequence[FeatureBlock]) -> FeatureBlock:
    """One block of all structures of ``blocks``, in order, structure indices shifted."""
    offsets = torch.cumsum(torch.tensor([0] + [b.n_structures for b in blocks[:-1]]), 0).tolist()
    return FeatureBlock(
        torch.cat([b.features for b in blocks]),
        torch.cat([b.species for b in blocks]),
        torch.cat([b.structure + offset for b, offset in zip(blocks, offsets)]),
        sum(b.n_structures for b in blocks),
    )


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
