"""Raw descriptor features of structures, kept between batches (``caching.features*``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from aenet_exp.descriptor import AtomGraph
from aenet_exp.training.batching import atoms_per_structure


class FeatureBlock(NamedTuple):
    """Features of several structures, atoms concatenated."""

    features: torch.Tensor  # (n_atoms, n_features)
    species: torch.Tensor  # (n_atoms,) species index
    structure: torch.Tensor  # (n_atoms,) 0..n_structures-1
    n_structures: int


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
    """Per-structure features (no gradients) of the structures in ``cacheable``, on ``device``."""

    def __init__(self, cacheable: set[int], device: torch.device):
        self.cacheable = cacheable
        self.device = device
        self.entries: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __contains__(self, index: int) -> bool:
        return index in self.entries

    def clear(self) -> None:
        self.entries.clear()

    def store(self, indices: Sequence[int], graph: AtomGraph, features: torch.Tensor) -> None:
        """Keep the rows of ``features`` ``(n_atoms, n_features)`` of each cacheable structure of ``graph``."""
        counts = atoms_per_structure(graph).tolist()
        for index, rows, species in zip(indices, features.split(counts), graph.species.split(counts)):
            if index in self.cacheable:
                self.entries[index] = (rows.detach().to(self.device), species.to(self.device))

    def block(self, indices: Sequence[int]) -> FeatureBlock:
        """The cached features of ``indices`` as one block."""
        rows = [self.entries[i] for i in indices]
        structure = torch.cat([torch.full((len(s),), k, dtype=torch.int64) for k, (_, s) in enumerate(rows)])
        return FeatureBlock(
            torch.cat([f for f, _ in rows]), torch.cat([s for _, s in rows]), structure.to(self.device), len(rows)
        )
