"""Features of several structures as one block, atoms concatenated (what the networks take)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch


class FeatureBlock(NamedTuple):
    """Features of several structures, atoms concatenated."""

    features: torch.Tensor  # (n_atoms, n_features)
    species: torch.Tensor  # (n_atoms,) species index
    structure: torch.Tensor  # (n_atoms,) 0..n_structures-1
    n_structures: int

    def to(self, device: torch.device, dtype: torch.dtype) -> "FeatureBlock":
        """Features cast to ``dtype``; all tensors on ``device``."""
        return FeatureBlock(self.features.to(device, dtype), self.species.to(device), self.structure.to(device), self.n_structures)


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
