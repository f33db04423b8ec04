"""Features of several structures as one block, atoms concatenated (what the networks take)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
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
    counts = [len(species) for _, species in rows]
    structure = torch.from_numpy(np.repeat(np.arange(len(rows)), counts)).to(device)  # numpy: no torch op overhead
    return FeatureBlock(torch.cat([f for f, _ in rows]), torch.cat([s for _, s in rows]), structure, len(rows))


def concat_blocks(blocks: Sequence[FeatureBlock]) -> FeatureBlock:
    """One block of all structures of ``blocks``, in order, structure indices shifted."""
    offsets = [0, *itertools.accumulate(b.n_structures for b in blocks[:-1])]
    return FeatureBlock(
        torch.cat([b.features for b in blocks]),
        torch.cat([b.species for b in blocks]),
        torch.cat([b.structure + offset for b, offset in zip(blocks, offsets)]),
        sum(b.n_structures for b in blocks),
    )
