"""``force.*``: which training structures are supervised on forces in each epoch, and the loss they enter.

Every ``force`` key ends here: :class:`ForceSupervision` takes them as its arguments.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from aenet_exp.errors import ConfigError
from aenet_exp.training.bootstrap import BatchWeights
from aenet_exp.training.distributed import SINGLE, Ranks

# ceil(fraction · N) of a product that is whole in exact arithmetic but not in binary (0.3 · 10 =
# 3.0000000000000004) must give that whole number, not the next one.
ROUNDING_SLACK = 1e-9


def rmse(error: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Each member's root mean square error ``(members, ...)`` -> ``(members,)``; with ``weight`` (broadcast to
    ``error``'s shape) the weighted one, ``sqrt(Σ w·e² / Σ w)`` (0 for a member whose weights are all 0)."""
    if weight is None:
        return error.square().flatten(1).mean(1).sqrt()
    squares, total = weighted_sums(error, weight)
    total = total.to(squares.dtype)
    return torch.where(total > 0, squares / total.where(total > 0, 1.0), 0.0).sqrt()


def weighted_sums(error: torch.Tensor, weight: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's ``Σ w·e²`` (differentiable) and ``Σ w`` (the count of entries without weights), ``(members,)``."""
    if weight is None:
        return error.square().flatten(1).sum(1), error.new_full((error.shape[0],), error[0].numel()).double()
    weight = weight.expand_as(error)
    return (weight * error.square()).flatten(1).sum(1), weight.flatten(1).sum(1).double()


def signed_mean(error: torch.Tensor) -> torch.Tensor:
    """``mean(s·error)`` with ``s = sign(error)`` held fixed: the mean absolute error as a linear projection of
    the errors (Jacobian ``mean(s·∂error/∂θ)``), whose target zero is where the errors are zero."""
    return (error * error.detach().sign()).mean()


class ForceSupervision:
    """The reference's force supervision: sub-sampling and the weighted loss.

    Loss ``(1 − α)·RMSE(E/atom) + α·c·RMSE(F)``, both RMSEs divided by the energy scale
    (normalised units), the force RMSE per component; ``c = sqrt(1/fraction)`` with
    ``scale_unbiased``, else 1. A committee's members each have their own loss of their own errors
    (leading axis ``members`` of the errors); the loss trained is their sum, so each member's weights
    receive exactly the gradient of its own loss. With ``weights`` (:class:`~aenet_exp.training.bootstrap.BatchWeights`,
    ``committee.bootstrap``) each member's RMSEs weigh its errors by how often its resample holds the structure.

    Sub-sampling: ``n = max(ceil(fraction · N), min_structures_per_epoch)`` (at most N) of the N
    force-labelled training structures ``candidates`` are supervised. ``fixed`` draws them once;
    ``random`` re-draws them every ``epochs_per_window`` epochs when ``resample_each_epoch``,
    else once. Draws come from a generator seeded with ``seed``. With ``weight`` 0 no structure
    is supervised on forces.
    """

    def __init__(
        self,
        weight: float = 0.0,
        fraction: float = 1.0,
        sampling: str = "random",
        resample_each_epoch: bool = True,
        min_structures_per_epoch: int | None = 1,
        scale_unbiased: bool = False,
        epochs_per_window: int = 1,
        *,
        candidates: np.ndarray,
        seed: int,
    ):
        self.alpha = float(weight)
        self.candidates = np.asarray(candidates)
        if self.alpha > 0 and len(self.candidates) == 0:
            raise ConfigError("force.weight", f"is {weight}, but no training structure has forces")
        self.force_factor = math.sqrt(1.0 / fraction) if scale_unbiased else 1.0
        self.resamples = sampling == "random" and resample_each_epoch and fraction < 1
        self.epochs_per_window = epochs_per_window
        n = math.ceil(fraction * len(self.candidates) - ROUNDING_SLACK)
        self.size = min(len(self.candidates), max(n, min_structures_per_epoch or 0))
        self.rng = np.random.default_rng(seed)
        self.selected: frozenset[int] = frozenset()
        self.window = -1

    @property
    def active(self) -> bool:
        """Whether forces enter the loss (α > 0)."""
        return self.alpha > 0

    # ------------------------------------------------------------------ which structures

    def _draw(self) -> frozenset[int]:
        if self.size >= len(self.candidates):
            return frozenset(int(i) for i in self.candidates)
        return frozenset(int(i) for i in self.rng.choice(self.candidates, size=self.size, replace=False))

    def select(self, epoch: int) -> tuple[frozenset[int], bool]:
        """The structures supervised on forces in ``epoch`` (0-based), and whether they were newly drawn."""
        if not self.active:
            return frozenset(), False
        window = epoch // self.epochs_per_window if self.resamples else 0
        if window == self.window:
            return self.selected, False
        self.window, self.selected = window, self._draw()
        return self.selected, True

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "selected": sorted(self.selected), "window": self.window}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.selected = frozenset(int(i) for i in state["selected"])
        self.window = state["window"]

    # ------------------------------------------------------------------ the loss

    def loss(self, energy_rmse, force_rmse, energy_scale: float):
        """``(1 − α)·RMSE(E)/scale + α·c·RMSE(F)/scale`` of RMSEs in eV/atom and eV/Å (floats, or tensors
        to back-propagate), pooled over a batch or an epoch; ``force_rmse`` None: energies only."""
        loss = (1 - self.alpha) * energy_rmse / energy_scale
        if force_rmse is not None and self.active:
            loss = loss + self.alpha * self.force_factor * force_rmse / energy_scale
        return loss

    def measurements(self, energy_error: torch.Tensor, force_error: torch.Tensor | None, energy_scale: float,
                     force_groups: int = 1) -> torch.Tensor:
        """A batch's errors as the measurements of a Kalman update (target zero), weighted as in the loss.

        Each structure's energy error ``(1 − α)·ΔE_i/scale`` (eV/atom, signed: linear in the predictions), then
        the force errors in ``force_groups`` consecutive groups of atoms, each group's mean absolute error
        ``α·c·mean(s·ΔF)/scale`` with the signs ``s`` held fixed (:func:`signed_mean`). Returns ``(m,)``: no
        energy terms when α = 1, no force terms without force errors; empty when nothing is weighted.
        """
        terms = []
        if self.alpha < 1:
            terms.append((1 - self.alpha) * energy_error / energy_scale)
        if force_error is not None and self.active:
            groups = torch.chunk(force_error, force_groups)
            terms.append(self.alpha * self.force_factor * torch.stack([signed_mean(g) for g in groups]) / energy_scale)
        return torch.cat(terms) if terms else energy_error.new_zeros(0)

    def batch_loss(
        self, energy_error: torch.Tensor, force_error: torch.Tensor | None, energy_scale: float,
        weights: BatchWeights | None = None, ranks: Ranks = SINGLE,
    ) -> torch.Tensor:
        """The members' :meth:`loss` of a batch's errors ``(members, n)`` eV/atom and ``(members, n_force_atoms, 3)``
        eV/Å (weighted by ``weights``), summed over members.

        With several ``ranks``, each holding its share of the batch's errors: this rank's part ``L_r`` of the
        batch's loss ``L``, ``Σ_r ∂L_r/∂θ = ∂L/∂θ`` (:meth:`pooled` over ranks).
        """
        if ranks.size > 1:
            squares = self.squares(energy_error, force_error, weights)
            return self.pooled(ranks.sum(squares.flat()), energy_scale).part(squares.sums)
        energy_weight, force_weight = weights if weights is not None else (None, None)
        force_rmse = rmse(force_error, force_weight) if force_error is not None else None
        return self.loss(rmse(energy_error, energy_weight), force_rmse, energy_scale).sum()

    def squares(
        self, energy_error: torch.Tensor, force_error: torch.Tensor | None, weights: BatchWeights | None = None
    ) -> SquaredErrors:
        """Each member's (weighted) squared-error sums and counts of a part's errors ``(members, ...)``."""
        energy_weight, force_weight = weights if weights is not None else (None, None)
        if force_error is None or not self.active:
            force_error, force_weight = energy_error.new_zeros((energy_error.shape[0], 0, 3)), None
        (s_e, n_e), (s_f, n_f) = weighted_sums(energy_error, energy_weight), weighted_sums(force_error, force_weight)
        return SquaredErrors(torch.stack([s_e, s_f], dim=1), torch.stack([n_e, n_f], dim=1))

    def pooled(self, totals: torch.Tensor, energy_scale: float) -> PooledLoss:
        """The loss of errors pooled over parts (batches, ranks) whose :meth:`SquaredErrors.flat` add up to
        ``totals``."""
        return PooledLoss(self, totals, energy_scale)


class SquaredErrors(NamedTuple):
    """A part's (a batch's, a rank's share's) squared errors: what a loss pooled over parts adds up."""

    sums: torch.Tensor  # (members, 2): each member's S_E, S_F, weighted (differentiable)
    counts: torch.Tensor  # (members, 2): its N_E, N_F (float64; the sums of the weights)

    def flat(self) -> torch.Tensor:
        """``(4·members,)`` float64, no graph: each member's ``S_E, S_F``, then its ``N_E, N_F`` (added over parts)."""
        return torch.cat([self.sums.detach().double().flatten(), self.counts.flatten()])


class PooledLoss:
    """The members' :meth:`ForceSupervision.loss`, summed, of errors pooled over parts whose squared-error
    ``totals`` (:meth:`SquaredErrors.flat` added over the parts) are known.

    An RMSE is not a sum over parts, but its gradient is: ``∂sqrt(S/N)/∂θ = (∂S/∂θ) / (2·sqrt(S·N))``, so a
    part's share :meth:`part` is ``L_p = c_E·S_E,p + c_F·S_F,p`` with ``c_E = (1 − α) / (2·scale·sqrt(S_E·N_E))``
    and ``c_F = α·c / (2·scale·sqrt(S_F·N_F))``, and ``Σ_p ∂L_p/∂θ = ∂L/∂θ``.
    """

    def __init__(self, supervision: ForceSupervision, totals: torch.Tensor, energy_scale: float):
        self.supervision, self.totals, self.energy_scale = supervision, totals, energy_scale
        sums, counts = totals.view(2, -1, 2)
        alpha = supervision.alpha
        factors = sums.new_tensor([1 - alpha, alpha * supervision.force_factor])
        self.factors = torch.where(sums > 0, factors / (2 * energy_scale * (sums * counts).sqrt()), 0.0)

    def value(self) -> float:
        """The pooled loss (normalised units)."""
        sums, counts = self.totals.view(2, -1, 2).tolist()
        return sum(
            self.supervision.loss(math.sqrt(s_e / n_e) if n_e else 0.0, math.sqrt(s_f / n_f) if n_f else None,
                                  self.energy_scale)
            for (s_e, s_f), (n_e, n_f) in zip(sums, counts)
        )

    def part(self, sums: torch.Tensor) -> torch.Tensor:
        """A part's share of the loss from its :attr:`SquaredErrors.sums` ``(members, 2)`` (an empty part: a
        constant zero)."""
        return (sums * self.factors.to(sums.dtype)).sum()
