"""The one force path: energies, forces ``−∂E/∂x`` and the strain derivative of a potential.

Training, evaluation and the ASE calculator all call :func:`evaluate`. What carries the geometry
derivative is the input:

- :class:`GraphInputs`: the descriptor runs on an atom graph under autograd (positions, and an
  optional homogeneous strain of cell and positions, are leaves that require grad);
- :class:`JacobianInputs`: features of a fixed geometry with their cached sparse Jacobian
  ``∂f/∂x`` (``caching.derivatives``): forces are ``−(∂E/∂f)·(∂f/∂x)``, equal to autograd's;
- :class:`AnalyticInputs` (inference): features computed without autograd and the analytic derivatives of each
  centre's features with respect to its pair vectors; forces and the strain derivative are scattered from
  ``(∂E/∂f)·(∂f/∂v)`` per pair, with no autograd graph of the descriptor (only of the small networks).

With ``create_graph`` (training) the forces stay differentiable, so a force loss reaches the weights.

A committee's members share the features; each member's forces come from the gradient of its own
energy with respect to its own view of them (:meth:`Potential.member_features`), so a batch's
descriptor is computed once for all members.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aenet_exp.descriptor.blocks import FeatureBlock
from aenet_exp.descriptor.chebyshev import ChebyshevDescriptor
from aenet_exp.descriptor.analytic import AnalyticFeatures
from aenet_exp.descriptor.derivatives import FeatureJacobian
from aenet_exp.descriptor.graph import AtomGraph
from aenet_exp.model.potential import Potential


class GraphInputs:
    """Features of ``graph`` computed from positions that require grad (and a strain, with ``strain``)."""

    def __init__(self, descriptor: ChebyshevDescriptor, graph: AtomGraph, strain: bool = False):
        self.positions = graph.positions.detach().requires_grad_(True)
        self.strain = graph.positions.new_zeros(3, 3, requires_grad=True) if strain else None
        geometry = graph._replace(positions=self.positions)
        if self.strain is not None:
            deformation = torch.eye(3, dtype=graph.positions.dtype, device=graph.positions.device) + self.strain
            geometry = graph._replace(positions=self.positions @ deformation, cells=graph.cells @ deformation)
        with torch.enable_grad():
            features = descriptor(geometry)
        self.block = FeatureBlock(features, graph.species, graph.structure, graph.n_structures)

    def derivatives(
        self, energy: torch.Tensor, member_features: torch.Tensor, create_graph: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each member's forces ``(members, n_atoms, 3)`` eV/Å and ``∂E/∂ε`` ``(members, 3, 3)`` eV (None
        without strain) of its energies ``energy`` ``(members, n_structures)``, computed from
        ``member_features`` ``(members, n_atoms, n_features)``: the members' feature gradients first, then
        each carried back through the shared descriptor."""
        (feature_gradients,) = torch.autograd.grad(energy.sum(), member_features, create_graph=create_graph)
        leaves = (self.positions,) if self.strain is None else (self.positions, self.strain)
        # one backward pass through the descriptor for all members, vectorised over their feature gradients
        gradients = torch.autograd.grad(
            self.block.features, leaves, feature_gradients, create_graph=create_graph, is_grads_batched=True
        )
        return -gradients[0], (gradients[1] if self.strain is not None else None)


class JacobianInputs:
    """Features of a fixed geometry ``block`` with their sparse Jacobian w.r.t. positions."""

    def __init__(self, block: FeatureBlock, jacobian: FeatureJacobian):
        self.block = block._replace(features=block.features.detach().requires_grad_(True))
        self.jacobian = jacobian

    def derivatives(self, energy: torch.Tensor, member_features: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, None]:
        """Each member's forces ``(members, n_atoms, 3)`` eV/Å of its energies ``energy`` ``(members,
        n_structures)`` as ``−(∂E/∂f)·(∂f/∂x)``, ``∂E/∂f`` taken at ``member_features``; no strain."""
        (gradient,) = torch.autograd.grad(energy.sum(), member_features, create_graph=create_graph)
        return self.jacobian.forces(gradient, self.block.features.shape[0]), None


class AnalyticInputs:
    """Features of ``graph`` computed without autograd, with what their analytic derivatives need
    (:class:`~aenet_exp.descriptor.analytic.AnalyticFeatures`)."""

    def __init__(self, descriptor: ChebyshevDescriptor, graph: AtomGraph, strain: bool = False):
        self.analytic = AnalyticFeatures(descriptor, graph)
        self.graph, self.strain = graph, strain
        features = self.analytic.features.requires_grad_(True)  # a leaf: ∂E/∂f through the networks alone
        self.block = FeatureBlock(features, graph.species, graph.structure, graph.n_structures)

    def derivatives(
        self, energy: torch.Tensor, member_features: torch.Tensor, create_graph: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each member's forces ``(members, n_atoms, 3)`` eV/Å and, with strain, ``∂E/∂ε`` ``(members, 3, 3)`` eV
        (summed over the graph's structures) of ``energy`` ``(members, n_structures)``: with ``g_p = ∂E/∂v_p`` for
        each pair ``p = i → j``, ``∂E/∂x_j += g_p``, ``∂E/∂x_i −= g_p`` and ``∂E/∂ε = Σ_p v_p ⊗ g_p``."""
        if create_graph:
            raise ValueError("analytic inputs are for inference: their forces cannot be differentiated again")
        (gradient,) = torch.autograd.grad(energy.sum(), member_features)  # (members, n_atoms, n_features)
        with torch.no_grad():
            per_pair = self.analytic.pair_gradient(gradient)  # (n_pairs, members, 3)
            pairs = self.graph.pairs
            d_energy = per_pair.new_zeros(gradient.shape[1], gradient.shape[0], 3)
            d_energy.index_add_(0, pairs.neighbor, per_pair).index_add_(0, pairs.center, per_pair, alpha=-1)
            strain = torch.einsum("pa,pkb->kab", self.analytic.vectors, per_pair) if self.strain else None
        return -d_energy.transpose(0, 1), strain


@dataclass
class Evaluation:
    """What :func:`evaluate` computed for a batch of ``n_structures`` structures of ``n_atoms`` atoms, per
    member of the potential (``members`` is 1 for a single potential)."""

    energy: torch.Tensor  # (members, n_structures) eV, or normalised Σ_i net(f̂_i) with ``normalized``
    atom_energies: torch.Tensor | None  # (members, n_atoms) eV (None with ``normalized``)
    forces: torch.Tensor | None  # (members, n_atoms, 3) eV/Å
    strain_derivative: torch.Tensor | None  # (members, 3, 3) ∂E/∂ε, eV (GraphInputs with strain)


def evaluate(
    potential: Potential,
    inputs: GraphInputs | JacobianInputs | AnalyticInputs,
    *,
    forces: bool = True,
    create_graph: bool = False,
    normalized: bool = False,
) -> Evaluation:
    """Energies and (with ``forces``) forces of ``inputs`` under ``potential``.

    ``normalized``: energies in the potential's normalised units (``Σ_i net(f̂_i)``, what training
    compares with normalised targets, free of float32 cancellation between large totals) and no
    per-atom energies; forces are in eV/Å either way.
    """
    block = inputs.block
    with torch.enable_grad():
        features = potential.member_features(block.features)
        if normalized:
            atom_energies = None
            energy = potential.normalized_energy(features, block.species, block.structure, block.n_structures)
            differentiated = potential.energy_scale * energy
        else:
            atom_energies = potential.atom_energies(features, block.species)
            energy = atom_energies.new_zeros(potential.members, block.n_structures).index_add_(1, block.structure, atom_energies)
            differentiated = energy
        force, strain = inputs.derivatives(differentiated, features, create_graph) if forces else (None, None)
    return Evaluation(energy, atom_energies, force, strain)


def energy_and_forces(
    potential: Potential, graph: AtomGraph, create_graph: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies ``(n_structures,)`` eV and forces ``(n_atoms, 3)`` eV/Å of a batch graph (a committee's mean).

    ``create_graph`` (default: ``potential.training``) keeps the force graph so a force loss
    can be back-propagated to the weights.
    """
    create_graph = potential.training if create_graph is None else create_graph
    result = evaluate(potential, GraphInputs(potential.descriptor, graph), create_graph=create_graph)
    return result.energy.mean(0), result.forces.mean(0)
