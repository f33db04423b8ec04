"""Features of one geometry with what their analytic derivatives need, for inference without autograd, in time
linear in the pairs (no triplets).

Radial terms are sums over a centre's pairs, ``Σ_p T_n(2r_p/Rc − 1)·fc(r_p)``. Angular terms are sums over unordered
couples of its pairs, ``Σ_{p<q} T_n(u_p·u_q)·w_p·w_q`` with ``w = fc`` (or ``s·fc`` in the type-spin channel). Writing
``T_n(c) = Σ_m a_nm c^m`` and ``(u_p·u_q)^m = Σ_{|α|=m} (m!/α!) u_p^α u_q^α`` over the monomials ``u^α = u_x^a u_y^b
u_z^c`` turns each couple sum into moments of the centre's pairs:

    Σ_{p<q} (u_p·u_q)^m w_p w_q = ½ (Σ_{|α|=m} (m!/α!) M_α² − Σ_p w_p²),   M_α = Σ_p w_p u_p^α,

the same numbers as the triplet sums (to rounding), at a cost per centre of (pairs × monomials) instead of pairs².
Given every member's ``∂E/∂f``, the energy gradient with respect to each pair vector follows from the moments too
(:meth:`AnalyticFeatures.pair_gradient`); the geometry, polynomials and monomials are computed once for all members.

On the unit sphere a monomial of degree m equals itself times ``|u|^(2k)``: every polynomial of degree ≤ A in ``u``
is, there, one in the monomials of degrees A and A − 1 alone (:func:`sphere_tables`), whose gradient differs from the
original's only along ``u`` — which the pair gradient projects out. Pairs therefore carry the monomials of degrees
A, A − 1 and A − 2 only, and the lower-degree moments follow from the top ones.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from aenet_exp.descriptor.chebyshev import ChebyshevDescriptor
from aenet_exp.descriptor.graph import AtomGraph


def exponents_of_degree(m: int) -> list[tuple[int, int, int]]:
    """The exponents ``(a, b, c)`` of the monomials ``u_x^a u_y^b u_z^c`` of degree ``m``."""
    return [(a, b, m - a - b) for a in range(m, -1, -1) for b in range(m - a, -1, -1)]


def multinomial(alpha) -> float:
    return math.factorial(sum(alpha)) / math.prod(math.factorial(e) for e in alpha)


@lru_cache(maxsize=None)
def sphere_tables(order: int) -> dict[str, np.ndarray]:
    """What the moment form needs for angular order ``order`` (A):

    - ``exponents`` ``(n_all, 3)`` of every monomial of degree 0..A, by degree; ``degree``, ``multinomial`` ``m!/α!``;
    - ``carried`` ``(n_carried, 3)``: the monomials a pair carries, degrees A, A − 1, A − 2 in that order; the first
      ``n_top`` (degrees A, A − 1) are the values' basis, those from ``n_a`` on (A − 1, A − 2) the gradient's;
    - ``lift`` ``(n_all, n_top)``: ``u^α = Σ_β lift[α, β] u^β`` on the unit sphere;
    - ``transform`` ``(n_all, n_top + 3·n_grad)``: coefficients ``Q_α`` of a polynomial to those of its lifted form on the
      values' basis and of its lifted form's ∂/∂u_x, ∂/∂u_y, ∂/∂u_z on the gradient's basis.
    """
    exponents = [alpha for m in range(order + 1) for alpha in exponents_of_degree(m)]
    top_degrees = [m for m in (order, order - 1) if m >= 0]
    grad_degrees = [m for m in (order - 1, order - 2) if m >= 0]
    carried = [alpha for m in dict.fromkeys(top_degrees + grad_degrees) for alpha in exponents_of_degree(m)]
    n_a = len(exponents_of_degree(order))
    n_top = sum(len(exponents_of_degree(m)) for m in top_degrees)
    top, grad = carried[:n_top], carried[n_a:]
    top_index, grad_index = {alpha: k for k, alpha in enumerate(top)}, {alpha: k for k, alpha in enumerate(grad)}
    lift = np.zeros((len(exponents), len(top)))
    for row, alpha in enumerate(exponents):
        target = order if (order - sum(alpha)) % 2 == 0 else order - 1
        for power in exponents_of_degree((target - sum(alpha)) // 2):  # (u_x² + u_y² + u_z²)^k expanded
            lift[row, top_index[tuple(a + 2 * p for a, p in zip(alpha, power))]] += multinomial(power)
    derivatives = np.zeros((3, len(top), len(grad)))
    for column, beta in enumerate(top):
        for d in range(3):
            if beta[d] > 0:
                lowered = tuple(b - (i == d) for i, b in enumerate(beta))
                derivatives[d, column, grad_index[lowered]] = beta[d]
    transform = np.concatenate([lift, *(lift @ derivatives[d] for d in range(3))], axis=1)
    exponents = np.array(exponents)
    return {"exponents": exponents, "degree": exponents.sum(1), "multinomial": np.array([multinomial(a) for a in exponents]),
            "carried": np.array(carried), "n_top": n_top, "n_a": n_a, "n_grad": len(grad), "lift": lift,
            "transform": transform}


@lru_cache(maxsize=None)
def chebyshev_coefficients(order: int) -> np.ndarray:
    """``a_nm`` ``(order+1, order+1)``: ``T_n(c) = Σ_m a_nm c^m``."""
    table = np.zeros((order + 1, order + 1))
    table[0, 0] = 1.0
    if order >= 1:
        table[1, 1] = 1.0
    for n in range(1, order):
        table[n + 1, 1:] = 2.0 * table[n, :-1]
        table[n + 1] -= table[n - 1]
    return table


class AnalyticFeatures:
    """The features ``(n_atoms, n_features)`` of ``graph`` and :meth:`pair_gradient`, computed without autograd.

    Only ``graph``'s pairs are used (its triplets may be empty); pairs beyond a cutoff contribute zero, so a list
    built with a skin gives the same numbers. A pair enters each channel with a factor of its neighbour's species:
    1 in the plain channel, the type spin ``s`` in the spin channel (multi-species descriptors). Sums over a centre's
    pairs are therefore taken per (centre, neighbour species) "key" and combined with the factors afterwards; laid
    out by key (zero padded), each member's contraction with its per-centre weights is one batched matrix product.
    """

    def __init__(self, descriptor: ChebyshevDescriptor, graph: AtomGraph):
        with torch.no_grad():
            self._pairs(descriptor, graph)
            self._radial(descriptor)
            self._angular(descriptor)
            self.features = torch.cat([block for pair in zip(self._radial_features(), self._angular_features())
                                       for block in pair], dim=1)

    def _pairs(self, descriptor: ChebyshevDescriptor, graph: AtomGraph) -> None:
        """Pair vectors, distances, unit vectors; each pair's key; the species' channel factors ``(n_species,
        channels)``."""
        self.n_atoms, pairs = graph.positions.shape[0], graph.pairs
        self.center = pairs.center
        if graph.n_structures == 1:  # one cell: the lattice shifts in one product
            offsets = pairs.shift.to(graph.positions.dtype) @ graph.cells[0]
            self.vectors = graph.positions[pairs.neighbor] - graph.positions[pairs.center] + offsets
        else:
            self.vectors = descriptor.pair_vectors(graph)  # (n_pairs, 3) Å
        self.distances = torch.linalg.vector_norm(self.vectors, dim=-1)
        self.units = self.vectors / self.distances.unsqueeze(-1)
        spins = descriptor.typespin.to(self.distances.dtype)
        self.n_species = len(spins) if descriptor.multi_species else 1
        self.channel_factors = (torch.stack([torch.ones_like(spins), spins], dim=1) if descriptor.multi_species
                                else spins.new_ones(1, 1))
        neighbor_species = graph.species[pairs.neighbor] if descriptor.multi_species else torch.zeros_like(pairs.center)
        self.key = pairs.center * self.n_species + neighbor_species
        self.n_keys = self.n_atoms * self.n_species

    def _radial(self, descriptor: ChebyshevDescriptor) -> None:
        """Radial terms per key ``(n_atoms, n_species, R+1)`` and the slopes ``d/dr[T_n fc]`` laid out by key."""
        radial = descriptor.radial
        cutoff = radial.cutoff_fn.cutoff
        polynomials, derivatives = chebyshev_by_angle(2.0 * self.distances / cutoff - 1.0, radial.order)
        envelope = radial.cutoff_fn(self.distances).unsqueeze(-1)
        terms = polynomials * envelope  # (n_pairs, R+1)
        slope = (derivatives * (2.0 / cutoff) * envelope
                 + polynomials * radial.cutoff_fn.derivative(self.distances).unsqueeze(-1))  # 1/Å
        self.radial_sums = terms.new_zeros(self.n_keys, terms.shape[1]).index_add_(0, self.key, terms)
        self.radial_slope = slope
        self.radial_slot, self.radial_width = slots(self.key, self.n_keys)

    def _angular(self, descriptor: ChebyshevDescriptor) -> None:
        """The pairs within the angular cutoff: cutoff values and slopes, their monomials of degrees A, A − 1, A − 2
        laid out by key; per key the moments ``Σ_p fc_p u_p^α`` of every degree ``(n_atoms, n_species, n_all)`` (lifted
        from the top two) and ``Σ_p fc_p²`` ``(n_atoms, n_species)``."""
        angular = descriptor.angular
        self.angular_pairs = torch.nonzero(self.distances < angular.cutoff_fn.cutoff).squeeze(-1)  # (n_ang,)
        r = self.distances[self.angular_pairs]
        self.cut, self.cut_slope = angular.cutoff_fn(r), angular.cutoff_fn.derivative(r)
        self.inverse_distance = 1.0 / r
        self.angular_units = self.units[self.angular_pairs]
        self.angular_key = self.key[self.angular_pairs]
        tables = sphere_tables(angular.order)
        dtype, device = r.dtype, r.device
        as_tensor = lambda name: torch.as_tensor(tables[name], dtype=dtype, device=device)  # noqa: E731
        self.n_top, self.n_a, self.n_grad = tables["n_top"], tables["n_a"], tables["n_grad"]
        self.degree_index = torch.as_tensor(tables["degree"], device=device)
        self.degree_sizes = np.bincount(tables["degree"]).tolist()  # monomials per degree, in order
        self.multinomial, self.transform = as_tensor("multinomial"), as_tensor("transform")
        self.by_degree = torch.zeros(len(tables["degree"]), angular.order + 1, dtype=dtype, device=device)  # Σ_{|α|=m}
        self.by_degree[torch.arange(len(tables["degree"])), self.degree_index] = 1.0
        self.coefficients = torch.as_tensor(chebyshev_coefficients(angular.order), dtype=dtype, device=device)
        powers = [chebyshev_powers(self.angular_units[:, d], angular.order).T for d in range(3)]  # (A+1, n_ang) each
        carried = torch.as_tensor(tables["carried"], device=device)
        monomials = (powers[0].index_select(0, carried[:, 0]) * powers[1].index_select(0, carried[:, 1])
                     * powers[2].index_select(0, carried[:, 2])).T  # (n_ang, n_carried); rows gathered, not columns
        self.angular_slot, width = slots(self.angular_key, self.n_keys)
        self.monomials = by_center(monomials, self.angular_key, self.angular_slot, self.n_keys, width)
        cut = by_center(self.cut.unsqueeze(-1), self.angular_key, self.angular_slot, self.n_keys, width)
        top = torch.bmm(cut.transpose(1, 2), self.monomials[..., : self.n_top]).view(self.n_atoms, self.n_species, -1)
        self.key_moments = top @ as_tensor("lift").T  # every degree's moments from the top two's
        self.key_squares = (cut * cut).sum((1, 2)).view(self.n_atoms, self.n_species)

    def _radial_features(self) -> list[torch.Tensor]:
        """Per channel, ``Σ_p factor_p T_n(2r_p/Rc − 1) fc(r_p)`` ``(n_atoms, R+1)``."""
        per_key = self.radial_sums.view(self.n_atoms, self.n_species, -1)
        return list(torch.einsum("asn,sc->can", per_key, self.channel_factors).unbind(0))

    def _angular_features(self) -> list[torch.Tensor]:
        """Per channel, ``Σ_{p<q} T_n(u_p·u_q) w_p w_q = Σ_m a_nm ½(Σ_{|α|=m} C_α M_α² − Σ_p w_p²)`` ``(n_atoms, A+1)``,
        ``w = factor·fc``, ``M_α = Σ_p w_p u_p^α``."""
        self.moments = torch.einsum("asm,sc->acm", self.key_moments, self.channel_factors)  # (n_atoms, channels, n_mono)
        squares = self.key_squares @ self.channel_factors**2  # (n_atoms, channels)
        per_degree = (self.multinomial * self.moments * self.moments) @ self.by_degree  # (n_atoms, channels, A+1)
        couples = 0.5 * (per_degree - squares.unsqueeze(-1))
        return list((couples @ self.coefficients.T).unbind(1))

    def _force_layouts(self) -> None:
        """What the forces of every member share, made on the first request: the radial slopes laid out by key
        ``(n_keys, width, R+1)``, and per atom ``H`` ``(n_atoms, channels·(A+1), n_top + 3·n_grad)``
        (:meth:`_angular_coefficients`)."""
        self.radial_slopes = by_center(self.radial_slope, self.key, self.radial_slot, self.n_keys, self.radial_width)
        weighted = 2.0 * self.multinomial * self.moments  # (n_atoms, C, n_all)
        per_degree = torch.stack([w @ t for w, t in zip(weighted.split(self.degree_sizes, dim=-1),
                                                       self.transform.split(self.degree_sizes, dim=0))], dim=2)
        self.moment_transform = per_degree.flatten(1, 2)  # (n_atoms, C·(A+1), T)

    def _angular_coefficients(self, angular_gradient: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per key, the coefficients of ``P(u) = Σ_α Q_α u^α`` lifted onto the values' basis ``(n_keys, n_top,
        members)`` and of its gradient on the gradient's basis ``(n_keys, n_grad, 3·members)``; and ``Σ_m B_m``
        ``(n_keys, members)``.

        ``E`` depends on a channel through ``Σ_m B_m (Σ_α C_α M_α² − Σ w²)`` with ``B_m = ½ Σ_n ∂E/∂F_n a_nm``, so
        ``Q_α = ∂E/∂M_α = 2 B_|α| C_α M_α``: the members differ only in ``B`` ``(A+1)`` per channel, and the transformed
        coefficients are ``B @ H`` with ``H_m = Σ_{|α|=m} 2 C_α M_α transform[α]`` (times the key's channel factor)
        shared by all members. ``angular_gradient``: ``(n_atoms, members, channels, A+1)``.
        """
        b = 0.5 * angular_gradient @ self.coefficients  # (n_atoms, members, channels, A+1)
        members = b.shape[1]
        per_key = torch.einsum("akcd,sc->askcd", b, self.channel_factors).reshape(self.n_atoms, -1,
                                                                                   self.moment_transform.shape[1])
        coefficients = torch.bmm(per_key, self.moment_transform).view(self.n_keys, members, -1)  # (n_keys, members, T)
        squares = torch.einsum("akc,sc->ask", b.sum(-1), self.channel_factors**2).reshape(self.n_keys, members)
        values = coefficients[..., : self.n_top].transpose(1, 2)
        gradient = coefficients[..., self.n_top:].reshape(self.n_keys, members * 3, self.n_grad).transpose(1, 2)
        return values, gradient, squares

    def pair_gradient(self, feature_gradient: torch.Tensor) -> torch.Tensor:
        """``∂E/∂v_p`` ``(n_pairs, members, 3)`` eV/Å of every pair vector from ``∂E/∂f`` ``(members, n_atoms,
        n_features)``."""
        if not hasattr(self, "moment_transform"):
            self._force_layouts()
        members, channels = feature_gradient.shape[0], self.channel_factors.shape[1]
        n_angular = self.coefficients.shape[0]
        n_radial = feature_gradient.shape[-1] // channels - n_angular
        per_atom = feature_gradient.transpose(0, 1).reshape(self.n_atoms, members, channels, n_radial + n_angular)
        radial_gradient, angular_gradient = per_atom.split([n_radial, n_angular], dim=-1)
        # radial: Σ_c factor_c Σ_n ∂E/∂F_cn d/dr[T_n fc] along u
        radial_weights = torch.einsum("akcn,sc->asnk", radial_gradient, self.channel_factors)
        radial_weights = radial_weights.reshape(self.n_keys, n_radial, members)  # per key: Σ_c factor_c ∂E/∂F_c
        slopes = torch.bmm(self.radial_slopes, radial_weights)[self.key, self.radial_slot]  # (n_pairs, members)
        gradient = slopes.unsqueeze(-1) * self.units.unsqueeze(1)  # (n_pairs, members, 3)
        # angular: P(u) and ∇P of each pair from its monomials (the lifted forms: equal on the sphere, and ∇P up to a
        # part along u that is projected out below)
        value_weights, gradient_weights, squares = self._angular_coefficients(angular_gradient)
        at = (self.angular_key, self.angular_slot)
        values = torch.bmm(self.monomials[..., : self.n_top], value_weights)[at]  # (n_ang, members)
        along = torch.bmm(self.monomials[..., self.n_a:], gradient_weights)[at].view(-1, members, 3)
        u = self.angular_units.unsqueeze(1)
        tangential = along - (along * u).sum(-1, keepdim=True) * u
        # with w = fc: ∂(w P(u))/∂v = fc' P u + (fc/r) (∇P − (u·∇P) u), ∂(w²)/∂v = 2 fc fc' u
        cut, slope = self.cut.view(-1, 1, 1), self.cut_slope.view(-1, 1, 1)
        square = squares[self.angular_key]
        angular = ((values - 2.0 * square * self.cut.unsqueeze(-1)).unsqueeze(-1) * slope * u
                   + cut * self.inverse_distance.view(-1, 1, 1) * tangential)
        return gradient.index_add_(0, self.angular_pairs, angular)


def slots(key: torch.Tensor, n_keys: int) -> tuple[torch.Tensor, int]:
    """Each pair's position among the pairs of its ``key`` ``(n_pairs,)``, in pair order, and the most pairs of a key."""
    if not len(key):
        return key.clone(), 0
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(key, minlength=n_keys)
    first = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(key)
    slot[order] = torch.arange(len(key), device=key.device) - first[key[order]]
    return slot, int(counts.max())


def by_center(values: torch.Tensor, center: torch.Tensor, slot: torch.Tensor, n_atoms: int, width: int) -> torch.Tensor:
    """Per-pair ``values`` ``(n_pairs, ...)`` placed at ``[center, slot]`` of a zero ``(n_atoms, width, ...)``."""
    layout = values.new_zeros(n_atoms, width, *values.shape[1:])
    layout[center, slot] = values
    return layout


def chebyshev_by_angle(x: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``T_n(x) = cos(nθ)`` and ``T_n'(x) = n sin(nθ)/sin θ`` (``n²`` and ``(−1)^(n+1) n²`` at ``x = ±1``), ``θ = arccos x``,
    for ``n = 0..order``: ``(n, order+1)`` each, in two vectorised passes instead of a recurrence over ``n``. ``x`` is
    clamped to [−1, 1] (beyond it, a pair outside the cutoff, the envelope makes the terms zero)."""
    x = x.clamp(-1.0, 1.0)
    theta = torch.arccos(x).unsqueeze(-1)
    n = torch.arange(order + 1, dtype=x.dtype, device=x.device)
    angles = theta * n
    sine = torch.sin(theta)
    edge = torch.where(x.unsqueeze(-1) > 0, n * n, (-1.0) ** (n + 1) * n * n)  # the limits at θ = 0 and π
    slopes = torch.where(sine > 1e-8, n * torch.sin(angles) / sine.clamp(min=1e-8), edge)
    return torch.cos(angles), slopes


def chebyshev_powers(values: torch.Tensor, order: int) -> torch.Tensor:
    """``values^0 .. values^order`` ``(n, order+1)``."""
    powers = [torch.ones_like(values)]
    for _ in range(order):
        powers.append(powers[-1] * values)
    return torch.stack(powers, dim=-1)
