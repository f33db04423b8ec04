"""Analytic derivatives of the Chebyshev features with respect to atom positions, as a sparse Jacobian.

For structures whose geometry never changes (training data), ``∂f_i/∂x_a`` is computed once and
forces follow each step as a sparse product with ``∂E/∂f`` (:meth:`FeatureJacobian.forces`),
instead of re-running the descriptor under autograd.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch

from aenet_exp.descriptor.chebyshev import ChebyshevDescriptor
from aenet_exp.descriptor.graph import AtomGraph
from aenet_exp.descriptor.terms import chebyshev, chebyshev_derivative


class FeatureJacobian(NamedTuple):
    """Non-zero blocks ``∂f_center/∂x_atom`` of the feature Jacobian (periodic images merged)."""

    center: torch.Tensor  # (n_entries,) int64 atom whose features are differentiated
    atom: torch.Tensor  # (n_entries,) int64 atom whose position varies
    blocks: torch.Tensor  # (n_entries, n_features, 3) 1/Å

    def forces(self, feature_gradient: torch.Tensor, n_atoms: int) -> torch.Tensor:
        """``−Σ_i ∂E/∂f_i · ∂f_i/∂x_a`` ``(..., n_atoms, 3)`` from ``∂E/∂f`` ``(..., n_atoms, n_features)`` (leading
        axes: e.g. a committee's members, each with its own gradient)."""
        # Atoms first, (members, features) as one contiguous row per atom: each Jacobian entry gathers one row with
        # index_select (not feature_gradient[..., self.center, :]: the same rows, but its backward is an index_add,
        # an indexing's an accumulating index_put, several times slower on CPU), and scatters one back.
        leading = feature_gradient.shape[:-2]
        rows = feature_gradient.reshape(-1, *feature_gradient.shape[-2:]).transpose(0, 1).contiguous()  # (n, L, F)
        per_entry = torch.einsum("elf,efc->elc", rows.index_select(0, self.center), self.blocks)
        forces = per_entry.new_zeros(n_atoms, per_entry.shape[1], 3).index_add_(0, self.atom, per_entry)
        return -forces.transpose(0, 1).reshape(*leading, n_atoms, 3)

    def shifted(self, offset: int) -> "FeatureJacobian":
        """The same blocks with atom indices moved by ``offset`` (for concatenating structures)."""
        return FeatureJacobian(self.center + offset, self.atom + offset, self.blocks)

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> "FeatureJacobian":
        return FeatureJacobian(self.center.to(device), self.atom.to(device), self.blocks.to(device, dtype))

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self)


def tensor_bytes(tensors) -> int:
    """Bytes held by ``tensors``."""
    return sum(t.element_size() * t.numel() for t in tensors)


def concat_jacobians(jacobians: list[FeatureJacobian], n_atoms: list[int]) -> FeatureJacobian:
    """One Jacobian of structures concatenated in order, with ``n_atoms`` atoms each."""
    offsets = [0, *itertools.accumulate(n_atoms[:-1])]
    parts = [j.shifted(offset) for j, offset in zip(jacobians, offsets)]
    return FeatureJacobian(*(torch.cat(column) for column in zip(*parts)))


def pair_derivatives(descriptor: ChebyshevDescriptor, graph: AtomGraph) -> torch.Tensor:
    """``∂f_center/∂v_p`` ``(n_pairs, n_features, 3)`` for each pair vector ``v_p`` (neighbour − centre).

    Radial term ``g_n(r)``: ``g_n'(r) u``. Angular term ``T_n(c) fc(r_a) fc(r_b)`` with ``c = u_a·u_b``:
    ``T_n'(c) fc_a fc_b (u_b − c u_a)/r_a + T_n(c) fc_a' fc_b u_a`` for ``v_a`` (and symmetrically for ``v_b``).
    """
    triplets = graph.triplets
    distances, units = descriptor.pair_geometry(graph)
    radial = descriptor.radial.derivative(distances).unsqueeze(-1) * units.unsqueeze(1)  # (n_pairs, R+1, 3)

    angular = descriptor.angular
    a, b = triplets.pair_a, triplets.pair_b
    u_a, u_b, r_a, r_b = units[a], units[b], distances[a].unsqueeze(-1), distances[b].unsqueeze(-1)
    cos_angle = (u_a * u_b).sum(-1)
    cut, slope = angular.cutoff_fn(distances), angular.cutoff_fn.derivative(distances)
    values = chebyshev(cos_angle, angular.order)  # (n_triplets, A+1)
    slopes = chebyshev_derivative(cos_angle, angular.order) * (cut[a] * cut[b]).unsqueeze(-1)
    cos = cos_angle.unsqueeze(-1)

    def towards(this, other, r, d_cut_this, cut_other):
        """∂(angular terms)/∂v_this ``(n_triplets, A+1, 3)``."""
        through_angle = slopes.unsqueeze(-1) * ((other - cos * this) / r).unsqueeze(1)
        through_cutoff = (values * (d_cut_this * cut_other).unsqueeze(-1)).unsqueeze(-1) * this.unsqueeze(1)
        return through_angle + through_cutoff

    d_a = towards(u_a, u_b, r_a, slope[a], cut[b])
    d_b = towards(u_b, u_a, r_b, slope[b], cut[a])

    def per_pair(weight: torch.Tensor | None) -> torch.Tensor:
        """Triplet derivatives (times ``weight`` per triplet) summed onto the pair they vary."""
        w = 1.0 if weight is None else weight.view(-1, 1, 1)
        out = d_a.new_zeros(len(distances), *d_a.shape[1:])
        return out.index_add_(0, a, d_a * w).index_add_(0, b, d_b * w)

    blocks = [radial, per_pair(None)]
    if descriptor.multi_species:
        spin = descriptor.neighbor_spins(graph)
        blocks += [radial * spin.view(-1, 1, 1), per_pair(spin[a] * spin[b])]
    return torch.cat(blocks, dim=1)


def feature_jacobian(descriptor: ChebyshevDescriptor, graph: AtomGraph) -> FeatureJacobian:
    """The sparse Jacobian of ``descriptor(graph)`` with respect to ``graph.positions``.

    Each pair ``i → j`` adds ``+∂f_i/∂v`` to block ``(i, j)`` and ``−∂f_i/∂v`` to ``(i, i)``; blocks
    of the same ``(i, a)`` (periodic images of one atom) are summed.
    """
    with torch.no_grad():
        per_pair = pair_derivatives(descriptor, graph)
    center, neighbor = graph.pairs.center, graph.pairs.neighbor
    n_atoms = graph.positions.shape[0]
    keys = torch.cat([center * n_atoms + neighbor, center * n_atoms + center])
    unique, slot = torch.unique(keys, return_inverse=True)
    n_pairs = len(center)
    blocks = per_pair.new_zeros(len(unique), *per_pair.shape[1:])
    blocks.index_add_(0, slot[:n_pairs], per_pair).index_add_(0, slot[n_pairs:], per_pair, alpha=-1)
    return FeatureJacobian(unique // n_atoms, unique % n_atoms, blocks)
