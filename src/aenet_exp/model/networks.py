"""One feed-forward network per chemical species, evaluated once per species for a whole batch."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from aenet_exp.model.checks import ACTIVATION_NAMES, check_activation, check_network


class Twist(nn.Module):
    """ænet's 'twist' activation (code 4): ``1.7159 tanh(2x/3) + 0.1 x``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0)) + 0.1 * x


class ScaledTanh(nn.Module):
    """ænet's 'mtanh' activation: ``1.7159 tanh(2x/3)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


ACTIVATIONS: dict[str, type[nn.Module]] = dict(
    zip(ACTIVATION_NAMES, (nn.Identity, nn.Tanh, nn.Sigmoid, nn.ReLU, ScaledTanh, Twist), strict=True)
)


def activation(name: str) -> nn.Module:
    """The activation module called ``name`` (one of :data:`ACTIVATIONS`)."""
    check_activation(name)
    return ACTIVATIONS[name]()


def mlp(n_inputs: int, hidden: Sequence[int], activations: Sequence[str]) -> nn.Sequential:
    """``n_inputs -> hidden[0] -> ... -> 1``; ``activations[k]`` follows hidden layer ``k``; the output is linear."""
    check_network(list(hidden), list(activations))
    layers: list[nn.Module] = []
    width = n_inputs
    for size, name in zip(hidden, activations):
        layers += [nn.Linear(width, int(size)), activation(name)]
        width = int(size)
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class SpeciesNetworks(nn.Module):
    """A ``ModuleDict`` of per-species MLPs mapping features to atomic energies.

    Args:
        species: symbols in the descriptor's order (atom species indices refer to it).
        n_features: descriptor length.
        hidden: per-species hidden layer sizes, e.g. ``{"Ti": [5, 5], "O": [5, 5]}``.
        activations: per-species activation names, one per hidden layer.
    """

    def __init__(
        self,
        species: Sequence[str],
        n_features: int,
        hidden: Mapping[str, Sequence[int]],
        activations: Mapping[str, Sequence[str]],
    ):
        super().__init__()
        missing = [s for s in species if s not in hidden or s not in activations]
        if missing:
            raise ValueError(f"no network architecture given for species {missing}")
        self.species = list(species)
        self.nets = nn.ModuleDict({s: mlp(n_features, hidden[s], activations[s]) for s in self.species})

    def forward(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """``(n_atoms, n_features)`` features and ``(n_atoms,)`` species indices -> ``(n_atoms,)`` outputs."""
        out = features.new_zeros(features.shape[0])
        for index, symbol in enumerate(self.species):
            atoms = torch.nonzero(species == index).squeeze(-1)
            if atoms.numel():
                out = out.index_add(0, atoms, self.nets[symbol](features[atoms]).squeeze(-1))
        return out
