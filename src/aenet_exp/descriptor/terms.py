"""Basis terms of the Chebyshev descriptor: a cosine cutoff and Chebyshev polynomials."""

from __future__ import annotations

import math

import torch
from torch import nn


class CosineCutoff(nn.Module):
    """``fc(r) = ½[cos(π r / Rc) + 1]`` for ``r < Rc``, else 0 (smooth to first order at Rc)."""

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        """``(n,)`` distances in Å -> ``(n,)`` cutoff values."""
        inside = distances < self.cutoff
        value = 0.5 * (torch.cos(distances * (math.pi / self.cutoff)) + 1.0)
        return torch.where(inside, value, torch.zeros_like(value))

    def derivative(self, distances: torch.Tensor) -> torch.Tensor:
        """``dfc/dr`` ``(n,)`` in 1/Å: ``−½ (π/Rc) sin(π r / Rc)`` inside the cutoff, else 0."""
        slope = -0.5 * (math.pi / self.cutoff) * torch.sin(distances * (math.pi / self.cutoff))
        return torch.where(distances < self.cutoff, slope, torch.zeros_like(slope))


def chebyshev(x: torch.Tensor, order: int) -> torch.Tensor:
    """Chebyshev polynomials of the first kind ``T_0..T_order`` of ``x`` ``(n,)`` -> ``(n, order+1)``.

    Uses the three-term recurrence, which stays differentiable at ``x = ±1``.
    """
    terms = [torch.ones_like(x), x]
    for _ in range(order - 1):
        terms.append(2.0 * x * terms[-1] - terms[-2])
    return torch.stack(terms[: order + 1], dim=-1)


def chebyshev_derivative(x: torch.Tensor, order: int) -> torch.Tensor:
    """``dT_n/dx`` for ``n = 0..order`` ``(n, order+1)``, from ``T'_{n+1} = 2 T_n + 2x T'_n − T'_{n−1}``."""
    values = chebyshev(x, order)
    slopes = [torch.zeros_like(x), torch.ones_like(x)]
    for n in range(1, order):
        slopes.append(2.0 * values[..., n] + 2.0 * x * slopes[-1] - slopes[-2])
    return torch.stack(slopes[: order + 1], dim=-1)


class ChebyshevTerms(nn.Module):
    """Chebyshev polynomials ``T_0..T_order`` times a cosine cutoff envelope (``num_feats = order + 1``)."""

    def __init__(self, order: int, cutoff: float):
        super().__init__()
        self.order = int(order)
        self.cutoff_fn = CosineCutoff(cutoff)

    @property
    def num_feats(self) -> int:
        return self.order + 1

    def envelop(self, x: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        """``T_n(x) · envelope`` for ``n = 0..order``: ``(n,)``, ``(n,)`` -> ``(n, order+1)``."""
        return chebyshev(x, self.order) * envelope.unsqueeze(-1)


class RadialTerms(ChebyshevTerms):
    """``T_n(2 r / Rc − 1) · fc(r)`` for ``n = 0..order``."""

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        """``(n_pairs,)`` Å -> ``(n_pairs, order+1)``."""
        return self.envelop(2.0 * distances / self.cutoff_fn.cutoff - 1.0, self.cutoff_fn(distances))

    def derivative(self, distances: torch.Tensor) -> torch.Tensor:
        """``d/dr [T_n(2r/Rc − 1) fc(r)]`` ``(n_pairs, order+1)`` in 1/Å."""
        cutoff = self.cutoff_fn.cutoff
        x = 2.0 * distances / cutoff - 1.0
        inner = chebyshev_derivative(x, self.order) * (2.0 / cutoff) * self.cutoff_fn(distances).unsqueeze(-1)
        return inner + chebyshev(x, self.order) * self.cutoff_fn.derivative(distances).unsqueeze(-1)


class AngularTerms(ChebyshevTerms):
    """``T_n(cos θ_ijk) · fc(r_ij) · fc(r_ik)`` for ``n = 0..order``."""

    def forward(self, cos_angle: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        """``(n_triplets,)`` cosines and ``fc(r_ij) · fc(r_ik)`` (from :attr:`cutoff_fn`) -> ``(n_triplets, order+1)``."""
        return self.envelop(cos_angle, envelope)
