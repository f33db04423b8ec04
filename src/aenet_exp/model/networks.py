"""One feed-forward network per chemical species, evaluated once per species for a whole batch."""

from __future__ import annotations

import math
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


class StackedLinear(nn.Module):
    """``members`` independent affine maps ``n_in -> n_out``, evaluated in one batched product.

    ``weight`` ``(members, n_out, n_in)`` and ``bias`` ``(members, n_out)``: member ``k``'s slice is what
    ``nn.Linear(n_in, n_out)`` holds (a state dict of such a layer loads as a one-member stack).
    """

    def __init__(self, members: int, n_in: int, n_out: int):
        super().__init__()
        self.in_features, self.out_features = n_in, n_out
        self.weight = nn.Parameter(torch.empty(members, n_out, n_in))
        self.bias = nn.Parameter(torch.empty(members, n_out))
        self._register_load_state_dict_pre_hook(one_member_from_linear)

    def reset_member(self, member: int, generator: torch.Generator | None) -> None:
        """Draw member ``member``'s weights as ``nn.Linear`` draws its own, from ``generator`` (None: torch's
        default generator)."""
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.weight[member], a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            nn.init.uniform_(self.bias[member], -bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(members, n, n_in)`` -> ``(members, n, n_out)``, member ``k`` through its own weights."""
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


def one_member_from_linear(state: dict, prefix: str, *args) -> None:
    """Load hook: an ``nn.Linear``'s ``(n_out, n_in)`` weight and ``(n_out,)`` bias (models saved before
    committees) become a one-member stack."""
    for name, dims in (("weight", 2), ("bias", 1)):
        key = prefix + name
        if key in state and state[key].dim() == dims:
            state[key] = state[key].unsqueeze(0)


def mlp(members: int, n_inputs: int, hidden: Sequence[int], activations: Sequence[str]) -> nn.Sequential:
    """``members`` stacked networks ``n_inputs -> hidden[0] -> ... -> 1``; ``activations[k]`` follows hidden
    layer ``k``; the output is linear. Weights are drawn by :meth:`SpeciesNetworks.reset_parameters`."""
    check_network(list(hidden), list(activations))
    layers: list[nn.Module] = []
    width = n_inputs
    for size, name in zip(hidden, activations):
        layers += [StackedLinear(members, width, int(size)), activation(name)]
        width = int(size)
    layers.append(StackedLinear(members, width, 1))
    return nn.Sequential(*layers)


def linear_layers(network: nn.Sequential) -> list[StackedLinear]:
    """The affine layers of one species' stacked MLP, input to output."""
    return [m for m in network if isinstance(m, StackedLinear)]


class SpeciesNetworks(nn.Module):
    """A ``ModuleDict`` of per-species MLPs mapping features to atomic energies, for each of ``members``
    committee members (one member: a single potential).

    Args:
        species: symbols in the descriptor's order (atom species indices refer to it).
        n_features: descriptor length.
        hidden: per-species hidden layer sizes, e.g. ``{"Ti": [5, 5], "O": [5, 5]}``.
        activations: per-species activation names, one per hidden layer.
        members: committee members, each with its own weights.
        seeds: member ``k``'s weights are drawn from a generator seeded with ``seeds[k]``, exactly as a single
            potential built after ``torch.manual_seed(seeds[k])`` draws them; None: all members in turn from
            torch's default generator.
    """

    def __init__(
        self,
        species: Sequence[str],
        n_features: int,
        hidden: Mapping[str, Sequence[int]],
        activations: Mapping[str, Sequence[str]],
        members: int = 1,
        seeds: Sequence[int] | None = None,
    ):
        super().__init__()
        missing = [s for s in species if s not in hidden or s not in activations]
        if missing:
            raise ValueError(f"no network architecture given for species {missing}")
        if members < 1:
            raise ValueError(f"a committee needs at least one member, not {members}")
        if seeds is not None and len(seeds) != members:
            raise ValueError(f"{len(seeds)} seeds for {members} members")
        self.species = list(species)
        self.members = int(members)
        self.nets = nn.ModuleDict({s: mlp(members, n_features, hidden[s], activations[s]) for s in self.species})
        self.reset_parameters(seeds)

    def reset_parameters(self, seeds: Sequence[int] | None = None) -> None:
        """Draw every member's weights: member by member, species by species, layer by layer (the order of a
        single potential's draws)."""
        for member in range(self.members):
            generator = torch.Generator().manual_seed(int(seeds[member])) if seeds is not None else None
            for symbol in self.species:
                for layer in linear_layers(self.nets[symbol]):
                    layer.reset_member(member, generator)

    def forward(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """``(members, n_atoms, n_features)`` features and ``(n_atoms,)`` species indices -> ``(members, n_atoms)``
        outputs, member ``k`` from its own networks."""
        out = features.new_zeros(features.shape[:2])
        for index, symbol in enumerate(self.species):
            atoms = torch.nonzero(species == index).squeeze(-1)
            if atoms.numel():
                out = out.index_add(1, atoms, self.nets[symbol](features[:, atoms]).squeeze(-1))
        return out
