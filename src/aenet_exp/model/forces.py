"""Forces as −dE/dr: by autograd through the descriptor, or through a cached feature Jacobian."""

from __future__ import annotations

import torch

from aenet_exp.descriptor import AtomGraph
from aenet_exp.descriptor.derivatives import FeatureJacobian
from aenet_exp.model.potential import Potential


def energy_and_forces(
    potential: Potential, graph: AtomGraph, create_graph: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies ``(n_structures,)`` eV and forces ``(n_atoms, 3)`` eV/Å of a batch.

    ``create_graph`` (default: ``potential.training``) keeps the force graph so a force loss
    can be back-propagated to the weights.
    """
    create_graph = potential.training if create_graph is None else create_graph
    positions = graph.positions.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = potential(graph._replace(positions=positions))
        return energy, forces_from_energy(energy, positions, create_graph)


def forces_from_energy(energy: torch.Tensor, positions: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """``−∂(Σ energy)/∂positions`` ``(n_atoms, 3)`` eV/Å; ``positions`` must be a leaf that requires grad."""
    if not positions.requires_grad:
        raise ValueError("forces need positions that require grad")
    (gradient,) = torch.autograd.grad(energy.sum(), positions, create_graph=create_graph)
    return -gradient


def forces_from_jacobian(
    energy: torch.Tensor, features: torch.Tensor, jacobian: FeatureJacobian, create_graph: bool
) -> torch.Tensor:
    """Forces ``(n_atoms, 3)`` eV/Å as ``−(∂E/∂f)·(∂f/∂x)`` with a precomputed sparse feature Jacobian.

    Equal to :func:`forces_from_energy` for the same geometry; ``features`` must require grad.
    """
    if not features.requires_grad:
        raise ValueError("forces need features that require grad")
    (gradient,) = torch.autograd.grad(energy.sum(), features, create_graph=create_graph)
    return jacobian.forces(gradient, features.shape[0])
