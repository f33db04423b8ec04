"""Per-species networks and the potential built on the descriptor."""

from aenet_exp.model.forces import energy_and_forces, forces_from_energy, forces_from_jacobian
from aenet_exp.model.networks import ACTIVATIONS, SpeciesNetworks, mlp
from aenet_exp.model.potential import Potential

__all__ = ["ACTIVATIONS", "Potential", "SpeciesNetworks", "energy_and_forces", "forces_from_energy", "forces_from_jacobian", "mlp"]
