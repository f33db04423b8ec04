"""Untrained potentials with fixed weights and normalisation, for tests of what a potential computes."""

from __future__ import annotations

import torch

from aenet_exp.descriptor import ChebyshevDescriptor
from aenet_exp.model import Potential


def make_potential(species, seed=0, **descriptor_settings) -> Potential:
    """An untrained float64 potential with fixed normalisation, seeded."""
    torch.manual_seed(seed)
    settings = dict(rad_order=12, rad_cutoff=6.0, ang_order=5, ang_cutoff=4.0) | descriptor_settings
    descriptor = ChebyshevDescriptor(species, **settings, dtype=torch.float64)
    hidden = {s: [8, 6] for s in species}
    activations = {s: ["tanh", "sigmoid"] for s in species}
    potential = Potential(descriptor, hidden, activations)
    potential.set_normalization(energy_shift=-3.0, energy_scale=0.7, atomic_energies={s: -1.0 - k for k, s in enumerate(species)})
    return potential
