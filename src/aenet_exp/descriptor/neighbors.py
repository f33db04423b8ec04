"""Neighbour lists reused between MD steps: built once with a skin, kept while no atom has moved more than half
of it (and the atoms and cell are the same), the geometry recomputed from the live positions every call.

Pairs between the cutoff and the cutoff plus the skin contribute exactly zero (the cosine cutoff and its slope
vanish there), so a reused list gives the same features and forces as a fresh one.
"""

from __future__ import annotations

import numpy as np
import torch

from aenet_exp.data.structure import Structure
from aenet_exp.descriptor.chebyshev import ChebyshevDescriptor
from aenet_exp.descriptor.graph import AtomGraph, Triplets, build_graph, find_pairs

DEFAULT_SKIN = 1.0  # Å


class NeighborReuse:
    """The graph of one structure at a time for ``descriptor``, its lists built with ``skin`` (Å) and reused.

    Attributes:
        builds: how many times the lists were built (the rest of the calls reused them).
    """

    def __init__(self, descriptor: ChebyshevDescriptor, skin: float = DEFAULT_SKIN):
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        # with a minimal pair distance, a pair may cross it without any atom moving far: no reuse
        self.skin = float(skin) if descriptor.min_cutoff == 0 else 0.0
        self.descriptor = descriptor
        self.builds = 0
        self._graph: AtomGraph | None = None
        self._reference: tuple | None = None  # species, cell, pbc, positions of the last build

    def graph(self, structure: Structure) -> AtomGraph:
        """``structure``'s graph: the kept lists with its positions, or new lists when they may have gone stale."""
        if self._reusable(structure):
            return self._graph._replace(positions=torch.from_numpy(structure.positions.copy()))
        self._graph = pair_graph(self.descriptor, structure, self.skin)
        cell = None if structure.cell is None else structure.cell.copy()
        self._reference = (structure.species, cell, structure.pbc.copy(), structure.positions.copy())
        self.builds += 1
        return self._graph

    def _reusable(self, structure: Structure) -> bool:
        if self._reference is None or self.skin == 0:
            return False
        species, cell, pbc, positions = self._reference
        same_cell = (cell is None and structure.cell is None) or (
            cell is not None and structure.cell is not None and np.array_equal(cell, structure.cell))
        if structure.species != species or not same_cell or not np.array_equal(pbc, structure.pbc):
            return False
        moved = np.linalg.norm(structure.positions - positions, axis=1)
        return bool(moved.max(initial=0.0) < 0.5 * self.skin)


def no_triplets() -> Triplets:
    empty = torch.zeros(0, dtype=torch.int64)
    return Triplets(empty, empty, empty)


def pair_graph(descriptor: ChebyshevDescriptor, structure: Structure, skin: float = 0.0) -> AtomGraph:
    """``structure``'s graph with the pairs within the larger cutoff plus ``skin`` (Å) and no triplets: what the
    analytic inference path (:mod:`aenet_exp.descriptor.analytic`) reads."""
    d = descriptor
    neighbors = find_pairs(structure, max(d.rad_cutoff, d.ang_cutoff) + skin, d.min_cutoff)
    return build_graph(structure, d.species, d.rad_cutoff, d.ang_cutoff, d.min_cutoff, neighbors, no_triplets())
