"""Potentials trained apart, as the members of one committee that shares the first one's normalisation.

Each run fitted its own feature statistics, energy shift and scale and reference energies. A member
``E = scale_k·net_k((f − m_k)/s_k) + shift_k + A_k`` is rewritten for the shared ``(m, s, scale, shift, A)``
by folding the difference into its first and last layers (exact up to rounding):

- first layer ``W (f − m_k)/s_k + b = [W diag(s/s_k)] f̂ + [b + W (m − m_k)/s_k]`` with ``f̂ = (f − m)/s``;
- last layer ``W' = W·scale_k/scale``, ``b' = (scale_k·b + shift_k − shift + A_k[X] − A[X]) / scale`` for the
  network of species ``X``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aenet_exp.model.networks import linear_layers
from aenet_exp.model.calibration import Calibration
from aenet_exp.model.potential import Potential


class Incompatible(ValueError):
    """Potentials that cannot be members of one committee; the message says what differs."""


def check_compatible(reference: Potential, other: Potential) -> None:
    """Incompatible when ``other`` has another descriptor, species or network layout than ``reference``."""
    mine, theirs = reference.settings(), other.settings()
    for key in ("descriptor", "hidden", "activations"):
        if mine[key] != theirs[key]:
            differing = sorted(k for k in set(mine[key]) | set(theirs[key]) if mine[key].get(k) != theirs[key].get(k))
            what = ", ".join(f"{k}: {theirs[key].get(k)!r} vs {mine[key].get(k)!r}" for k in differing)
            raise Incompatible(f"its {key} differs ({what})")


def rebased_networks(member: Potential, reference: Potential) -> dict[str, torch.Tensor]:
    """The network weights of the single potential ``member``, folded for ``reference``'s normalisation."""
    member = member.astype(torch.float64)
    m_k, s_k, m, s = member.feature_mean, member.feature_std, reference.feature_mean.double(), reference.feature_std.double()
    scale_k, shift_k = float(member.energy_scale), float(member.energy_shift)
    scale, shift = float(reference.energy_scale), float(reference.energy_shift)
    with torch.no_grad():
        for index, symbol in enumerate(member.species):
            layers = linear_layers(member.networks.nets[symbol])
            first, last = layers[0], layers[-1]
            first.bias += first.weight @ ((m - m_k) / s_k)
            first.weight *= s / s_k
            offset = shift_k - shift + float(member.atomic_energies[index]) - float(reference.atomic_energies[index])
            last.weight *= scale_k / scale
            last.bias.mul_(scale_k).add_(offset).div_(scale)
    return {name: value for name, value in member.state_dict().items() if name.startswith("networks.")}


def combine(potentials: Sequence[Potential]) -> Potential:
    """One committee of all members of ``potentials`` (single potentials or committees), in order, with the first
    one's descriptor and normalisation (its calibration reset to 1: the committee is calibrated anew)."""
    reference = potentials[0]
    for other in potentials[1:]:
        check_compatible(reference, other)
    members = [p.member(k) for p in potentials for k in range(p.members)]
    states = [rebased_networks(member, reference) for member in members]
    settings = reference.settings()
    committee = Potential.from_settings({**settings, "members": len(members)}).astype(torch.float64)
    shared = {name: value for name, value in reference.state_dict().items() if not name.startswith("networks.")}
    stacked = {name: torch.cat([state[name] for state in states]) for name in states[0]}
    committee.load_state_dict({**shared, **stacked})
    committee.calibration = Calibration()
    return committee
