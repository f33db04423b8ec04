"""Atom graphs: pair and triplet index lists for a batch of structures.

The graph holds indices and integer cell shifts only; geometry (distances, angles) is
recomputed from live positions and cells by the descriptor, so autograd sees it.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from aenet_exp.data.geometry import neighbor_list
from aenet_exp.data.structure import Structure


class Pairs(NamedTuple):
    """A full (both directions) neighbour-pair list.

    The displacement of pair ``p`` is ``positions[neighbor[p]] - positions[center[p]]
    + shift[p] @ cell`` in Å.
    """

    center: torch.Tensor  # (n_pairs,) int64 atom index i
    neighbor: torch.Tensor  # (n_pairs,) int64 atom index j
    shift: torch.Tensor  # (n_pairs, 3) int64 lattice translation of j


class Triplets(NamedTuple):
    """Unordered pairs of neighbours ``(j, k)`` of one centre, given as pair indices."""

    center: torch.Tensor  # (n_triplets,) int64 atom index i
    pair_a: torch.Tensor  # (n_triplets,) int64 index into Pairs (i -> j)
    pair_b: torch.Tensor  # (n_triplets,) int64 index into Pairs (i -> k), pair_a < pair_b


class AtomGraph(NamedTuple):
    """A batch of structures as one graph; atoms are concatenated, never padded."""

    positions: torch.Tensor  # (n_atoms, 3) Å
    species: torch.Tensor  # (n_atoms,) int64 index into the descriptor's species list
    cells: torch.Tensor  # (n_structures, 3, 3) Å, zeros for isolated structures
    structure: torch.Tensor  # (n_atoms,) int64 structure index of each atom
    pairs: Pairs
    triplets: Triplets

    @property
    def n_structures(self) -> int:
        return int(self.cells.shape[0])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "AtomGraph":
        """Move to ``device``; floating tensors (positions, cells) are also cast to ``dtype``."""
        move = lambda t: t.to(device=device)  # noqa: E731
        cast = lambda t: t.to(device=device, dtype=dtype or t.dtype)  # noqa: E731
        return AtomGraph(
            cast(self.positions),
            move(self.species),
            cast(self.cells),
            move(self.structure),
            Pairs(*map(move, self.pairs)),
            Triplets(*map(move, self.triplets)),
        )


def find_pairs(structure: Structure, cutoff: float, min_cutoff: float = 0.0) -> tuple[Pairs, np.ndarray]:
    """All pairs ``i != j`` (periodic images included) with ``min_cutoff <= d_ij < cutoff``.

    Returns the pairs sorted by centre and their distances ``(n_pairs,)`` in Å.
    """
    found = neighbor_list(structure, cutoff)
    keep = found.distance >= min_cutoff
    pairs = Pairs(
        torch.from_numpy(found.i[keep]), torch.from_numpy(found.j[keep]), torch.from_numpy(found.shift[keep])
    )
    return pairs, found.distance[keep]


def triplets_from_pairs(center: torch.Tensor, pair_index: torch.Tensor) -> Triplets:
    """Every unordered couple of pairs sharing a centre.

    Args:
        center: ``(n,)`` centre atom of each candidate pair, sorted ascending.
        pair_index: ``(n,)`` index of each candidate pair in the full pair list.
    """
    centers, counts = torch.unique_consecutive(center, return_counts=True)
    per_center = counts * (counts - 1) // 2
    total = int(per_center.sum())
    owner = torch.repeat_interleave(torch.arange(len(counts)), per_center)
    first_triplet = torch.cumsum(per_center, 0) - per_center
    local = torch.arange(total) - first_triplet[owner]
    # local = b (b - 1) / 2 + a with 0 <= a < b enumerates every couple once
    b = torch.floor((1 + torch.sqrt(1 + 8 * local.double())) / 2).long()
    b = b - (b * (b - 1) // 2 > local).long()
    a = local - b * (b - 1) // 2
    first_pair = torch.cumsum(counts, 0) - counts
    offset = first_pair[owner]
    return Triplets(centers[owner], pair_index[offset + a], pair_index[offset + b])


def species_indices(symbols: Sequence[str], species_order: Sequence[str]) -> torch.Tensor:
    """``(n_atoms,)`` int64 position of each atom's symbol in ``species_order``."""
    symbols = np.asarray(symbols)
    index = np.zeros(len(symbols), dtype=np.int64)
    for k, symbol in enumerate(species_order):
        index[symbols == symbol] = k
    return torch.from_numpy(index)


def build_graph(
    structure: Structure,
    species_order: Sequence[str],
    cutoff: float,
    triplet_cutoff: float,
    min_cutoff: float = 0.0,
    neighbors: tuple[Pairs, np.ndarray] | None = None,
    triplets: Triplets | None = None,
) -> AtomGraph:
    """The graph of one structure: pairs within ``cutoff`` and triplets within ``triplet_cutoff`` (Å).

    ``neighbors`` reuses the output of :func:`find_pairs` and ``triplets`` a triplet list built
    from those pairs (cached lists) instead of computing them.
    """
    unknown = sorted(set(structure.species) - set(species_order))
    if unknown:
        raise ValueError(
            f"{structure.source}: species {unknown} are not in the descriptor's species {list(species_order)}"
        )
    pairs, distances = neighbors or find_pairs(structure, max(cutoff, triplet_cutoff), min_cutoff)
    if triplets is None:
        angular = torch.from_numpy(np.flatnonzero(distances < triplet_cutoff))
        triplets = triplets_from_pairs(pairs.center[angular], angular)
    cell = structure.cell if structure.cell is not None else np.zeros((3, 3))
    return AtomGraph(
        positions=torch.from_numpy(structure.positions.copy()),
        species=species_indices(structure.species, species_order),
        cells=torch.from_numpy(np.asarray(cell, dtype=np.float64).copy()).unsqueeze(0),
        structure=torch.zeros(structure.n_atoms, dtype=torch.int64),
        pairs=pairs,
        triplets=triplets,
    )


def collate_graphs(graphs: Sequence[AtomGraph]) -> AtomGraph:
    """Concatenate graphs into one batch, shifting atom, pair and structure indices."""

    def offsets(counts: list[int], repeats: list[int]) -> torch.Tensor:
        counts_t = torch.tensor(counts, dtype=torch.int64)
        return torch.repeat_interleave(torch.cumsum(counts_t, 0) - counts_t, torch.tensor(repeats))

    n_atoms = [len(g.species) for g in graphs]
    n_pairs = [len(g.pairs.center) for g in graphs]
    n_triplets = [len(g.triplets.center) for g in graphs]
    atom_shift_of_pairs = offsets(n_atoms, n_pairs)
    atom_shift_of_triplets = offsets(n_atoms, n_triplets)
    pair_shift_of_triplets = offsets(n_pairs, n_triplets)
    structure_shift = offsets([g.n_structures for g in graphs], n_atoms)
    cat = torch.cat
    return AtomGraph(
        positions=cat([g.positions for g in graphs]),
        species=cat([g.species for g in graphs]),
        cells=cat([g.cells for g in graphs]),
        structure=cat([g.structure for g in graphs]) + structure_shift,
        pairs=Pairs(
            cat([g.pairs.center for g in graphs]) + atom_shift_of_pairs,
            cat([g.pairs.neighbor for g in graphs]) + atom_shift_of_pairs,
            cat([g.pairs.shift for g in graphs]),
        ),
        triplets=Triplets(
            cat([g.triplets.center for g in graphs]) + atom_shift_of_triplets,
            cat([g.triplets.pair_a for g in graphs]) + pair_shift_of_triplets,
            cat([g.triplets.pair_b for g in graphs]) + pair_shift_of_triplets,
        ),
    )
