"""``committee.bootstrap``: each member trains on its own resample of the training structures, as weights.

Member ``k`` draws as many structures as the training split has, with replacement, from a generator
seeded with its own seed (+ :data:`BOOTSTRAP_SEED_OFFSET`); a structure's weight in that member's loss is how
often it was drawn (0 for the about 37 % never drawn). Every member still sees every batch: the weights,
not the batches, differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

BOOTSTRAP_SEED_OFFSET = 5


class BatchWeights(NamedTuple):
    """Each member's weights of a batch's errors."""

    energy: torch.Tensor  # (members, n_structures) of the batch's energies, in order
    force: torch.Tensor | None  # (members, n_force_atoms, 1) of its force-labelled atoms (None: no forces)


class MemberWeights:
    """Per member and structure, the count of the structure in the member's resample of ``train``.

    Args:
        train: the training split (indices into the run's structures).
        n_atoms: ``(n_structures,)`` atom counts of all the run's structures.
        seeds: each member's seed.
        device, dtype: where and in what the losses are computed.
    """

    def __init__(self, train: np.ndarray, n_atoms: np.ndarray, seeds: Sequence[int], device: torch.device,
                 dtype: torch.dtype):
        counts = np.zeros((len(seeds), len(n_atoms)))
        for member, seed in enumerate(seeds):
            drawn = np.random.default_rng(int(seed) + BOOTSTRAP_SEED_OFFSET).choice(train, size=len(train), replace=True)
            np.add.at(counts[member], drawn, 1.0)
        self.counts = torch.tensor(counts, dtype=dtype, device=device)  # (members, n_structures)
        self.n_atoms = torch.as_tensor(np.asarray(n_atoms), device=device)

    def batch(self, order: Sequence[int], force_indices: Sequence[int]) -> BatchWeights:
        """The weights of a batch's energies (structures ``order``) and forces (atoms of ``force_indices``)."""
        energy = self.counts[:, torch.as_tensor(list(order), dtype=torch.long, device=self.counts.device)]
        if not len(force_indices):
            return BatchWeights(energy, None)
        structures = torch.as_tensor(list(force_indices), dtype=torch.long, device=self.counts.device)
        per_atom = torch.repeat_interleave(self.counts[:, structures], self.n_atoms[structures], dim=1)
        return BatchWeights(energy, per_atom.unsqueeze(-1))
