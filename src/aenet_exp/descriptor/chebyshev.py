"""ænet's Chebyshev (Artrith–Urban–Ceder) descriptor as tensor operations on pair and triplet lists."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from aenet_exp.data.structure import Structure
from aenet_exp.descriptor.checks import check_descriptor_settings
from aenet_exp.descriptor.graph import AtomGraph, build_graph
from aenet_exp.descriptor.terms import AngularTerms, RadialTerms


def typespin_weights(n_species: int) -> torch.Tensor:
    """ænet's species weights, centred on zero, 0 left out for an even count: 2 -> (−1, 1), 4 -> (−2, −1, 1, 2)."""
    half = n_species // 2
    values = list(range(-half, half + 1))
    if n_species % 2 == 0:
        values.remove(0)
    return torch.tensor(values, dtype=torch.float64)


class ChebyshevDescriptor(nn.Module):
    """Per-atom Chebyshev features, exactly ænet's.

    Layout for more than one species: ``[radial(0..R), angular(0..A), weighted radial(0..R),
    weighted angular(0..A)]``; for one species ``[radial, angular]``. The weighted channels
    multiply each neighbour ``j`` by ``s_j`` (radial) and each neighbour couple by ``s_j s_k``.

    Args:
        species: chemical symbols; their order fixes the typespin weights.
        rad_order, rad_cutoff: highest radial Chebyshev order and radial cutoff (Å).
        ang_order, ang_cutoff: highest angular Chebyshev order and angular cutoff (Å).
        min_cutoff: pairs closer than this (Å) are ignored; ænet's Fortran code uses none (0).
        dtype: floating dtype of the features.
    """

    def __init__(
        self,
        species: Sequence[str],
        rad_order: int,
        rad_cutoff: float,
        ang_order: int,
        ang_cutoff: float,
        min_cutoff: float = 0.0,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        check_descriptor_settings(list(species), rad_order, rad_cutoff, ang_order, ang_cutoff, min_cutoff)
        self.species = list(species)
        self.rad_order, self.rad_cutoff = int(rad_order), float(rad_cutoff)
        self.ang_order, self.ang_cutoff = int(ang_order), float(ang_cutoff)
        self.min_cutoff = float(min_cutoff)
        self.dtype = dtype
        self.radial = RadialTerms(rad_order, rad_cutoff)
        self.angular = AngularTerms(ang_order, ang_cutoff)
        self.register_buffer("typespin", typespin_weights(len(species)).to(dtype))

    @property
    def multi_species(self) -> bool:
        return len(self.species) > 1

    @property
    def n_features(self) -> int:
        per_channel = self.radial.num_feats + self.angular.num_feats
        return 2 * per_channel if self.multi_species else per_channel

    @property
    def cutoff(self) -> float:
        """The neighbour-search radius (Å): the larger of the two cutoffs."""
        return max(self.rad_cutoff, self.ang_cutoff)

    def settings(self) -> dict:
        """Everything needed to rebuild this descriptor (stored with a trained model)."""
        return {
            "species": list(self.species),
            "rad_order": self.rad_order,
            "rad_cutoff": self.rad_cutoff,
            "ang_order": self.ang_order,
            "ang_cutoff": self.ang_cutoff,
            "min_cutoff": self.min_cutoff,
        }

    def graph(self, structure: Structure) -> AtomGraph:
        """Pair and triplet lists of ``structure`` for this descriptor's cutoffs."""
        return build_graph(structure, self.species, self.rad_cutoff, self.ang_cutoff, self.min_cutoff)

    def featurize(
        self,
        structure: Structure,
        positions: torch.Tensor | None = None,
        cell: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Features ``(n_atoms, n_features)`` of one structure.

        ``positions`` ``(n_atoms, 3)`` and ``cell`` ``(3, 3)`` (Å) replace the structure's own
        and may require grad; features are differentiable with respect to them.
        """
        graph = self.graph(structure).to(dtype=self.dtype)
        if positions is not None or cell is not None:
            graph = graph._replace(
                positions=graph.positions if positions is None else positions,
                cells=graph.cells if cell is None else cell.reshape(1, 3, 3),
            )
        return self(graph)

    @staticmethod
    def pair_vectors(graph: AtomGraph) -> torch.Tensor:
        """Pair vectors ``(n_pairs, 3)`` Å, neighbour − centre plus its lattice shift, from the live positions and cells."""
        pairs, positions = graph.pairs, graph.positions
        pair_cells = graph.cells[graph.structure[pairs.center]]
        offsets = torch.bmm(pairs.shift.to(positions.dtype).unsqueeze(1), pair_cells).squeeze(1)
        return positions[pairs.neighbor] - positions[pairs.center] + offsets

    @classmethod
    def pair_geometry(cls, graph: AtomGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances ``(n_pairs,)`` Å and unit vectors ``(n_pairs, 3)`` from the live positions and cells."""
        vectors = cls.pair_vectors(graph)
        distances = torch.linalg.vector_norm(vectors, dim=-1)
        return distances, vectors / distances.unsqueeze(-1)

    def neighbor_spins(self, graph: AtomGraph) -> torch.Tensor:
        """Typespin weight ``s_j`` ``(n_pairs,)`` of each pair's neighbour."""
        return self.typespin.to(graph.positions.dtype)[graph.species[graph.pairs.neighbor]]

    def forward(self, graph: AtomGraph) -> torch.Tensor:
        """Features ``(n_atoms, n_features)`` of a batch graph."""
        pairs, triplets = graph.pairs, graph.triplets
        distances, units = self.pair_geometry(graph)
        angular_cutoff = self.angular.cutoff_fn(distances)  # once per pair, gathered per triplet

        radial = self.radial(distances)  # (n_pairs, R+1)
        cos_angle = (units[triplets.pair_a] * units[triplets.pair_b]).sum(-1)
        angular = self.angular(cos_angle, angular_cutoff[triplets.pair_a] * angular_cutoff[triplets.pair_b])
        blocks = [self._scatter(radial, pairs.center, graph), self._scatter(angular, triplets.center, graph)]
        if self.multi_species:
            spin = self.neighbor_spins(graph)  # (n_pairs,) s_j
            weight = spin[triplets.pair_a] * spin[triplets.pair_b]  # (n_triplets,) s_j s_k
            blocks += [
                self._scatter(radial * spin.unsqueeze(-1), pairs.center, graph),
                self._scatter(angular * weight.unsqueeze(-1), triplets.center, graph),
            ]
        return torch.cat(blocks, dim=1)

    @staticmethod
    def _scatter(terms: torch.Tensor, center: torch.Tensor, graph: AtomGraph) -> torch.Tensor:
        """Sum per-pair or per-triplet ``terms`` ``(n, k)`` onto their centre atoms -> ``(n_atoms, k)``."""
        return terms.new_zeros(graph.positions.shape[0], terms.shape[1]).index_add_(0, center, terms)
