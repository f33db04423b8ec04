"""Errors pooled over an epoch or a prediction pass, and the metrics named after them."""

from __future__ import annotations

import math
from typing import Protocol

import torch

from aenet_exp.evaluation.predictions import Predictions
from aenet_exp.model.calibration import mean_and_spread


class Processes(Protocol):
    """The processes that share an evaluation (:class:`aenet_exp.training.distributed.Ranks`)."""

    size: int

    def sum(self, tensor: torch.Tensor) -> torch.Tensor: ...


class ErrorSums:
    """Errors pooled over an epoch: per-atom energies (eV/atom) and force components (eV/Å), squared and absolute;
    for a committee, of its mean prediction, with the members' variances (the spread).

    The sums stay a float64 tensor on the errors' device while batches are added (no host sync per batch);
    they are read, once, when a metric is asked for. Each batch's float32 sums are widened to float64 before
    they are added, exactly as Python floats added them: the totals are the same to the bit.
    """

    # the sums' positions: squared and absolute energy errors, squared and absolute force errors, and a
    # committee's Σ σ² of energies and of forces
    SUMS = ("energy_sq", "energy_abs", "force_sq", "force_abs", "energy_var", "force_var")

    def __init__(self):
        self.energy_n, self.force_n = 0, 0
        self.committee = False  # whether the members' spread was added
        self._sums: torch.Tensor | None = None  # (6,) float64, in the order of SUMS
        self._read: tuple[float, ...] | None = (0.0,) * len(self.SUMS)

    def add_members(self, energy_error: torch.Tensor, force_error: torch.Tensor | None) -> None:
        """Add the members' errors ``(members, n)`` eV/atom and ``(members, n_force_atoms, 3)`` eV/Å: those of
        their mean, and with several members their spread (unbiased standard deviation over members)."""
        energy_mean, energy_std = mean_and_spread(energy_error.detach())
        force_mean, force_std = mean_and_spread(force_error.detach()) if force_error is not None else (None, None)
        self.add(energy_mean, force_mean, energy_std, force_std)

    def add(
        self, energy_error: torch.Tensor, force_error: torch.Tensor | None,
        energy_std: torch.Tensor | None = None, force_std: torch.Tensor | None = None,
    ) -> None:
        """Add errors ``(n,)`` eV/atom and ``(n_force_atoms, 3)`` eV/Å, and a committee's standard deviations of the
        same shapes."""
        energy_error = energy_error.detach()
        zero = energy_error.new_zeros(())
        parts = [energy_error.square().sum(), energy_error.abs().sum(), zero, zero, zero, zero]
        self.energy_n += energy_error.numel()
        if energy_std is not None:
            parts[4] = energy_std.detach().square().sum()
            self.committee = True
        if force_error is not None:
            force_error = force_error.detach()
            parts[2:4] = [force_error.square().sum(), force_error.abs().sum()]
            self.force_n += force_error.numel()
            if force_std is not None:
                parts[5] = force_std.detach().square().sum()
        values = torch.stack(parts).double()
        self._sums = values if self._sums is None else self._sums + values
        self._read = None

    def _values(self) -> tuple[float, ...]:
        """The sums as Python floats (one host transfer after any number of :meth:`add`)."""
        if self._read is None:
            self._read = tuple(self._sums.tolist())
        return self._read

    def __getattr__(self, name: str) -> float:
        """``energy_sq``, ``energy_abs``, ``force_sq``, ``force_abs``, ``energy_var``, ``force_var``: the sums."""
        if name in ErrorSums.SUMS:
            return self._values()[ErrorSums.SUMS.index(name)]
        raise AttributeError(name)

    def sum_over(self, ranks: Processes, device: torch.device) -> None:
        """Add these sums over ranks, in place: every rank then holds the errors of all ranks' structures."""
        if ranks.size == 1:
            return
        values = [*self._values(), self.energy_n, self.force_n]
        totals = ranks.sum(torch.tensor(values, dtype=torch.float64, device=device)).tolist()
        self._sums, self._read = None, tuple(totals[: len(self.SUMS)])
        self.energy_n, self.force_n = int(totals[-2]), int(totals[-1])

    def energy_rmse(self) -> float:
        return math.sqrt(self.energy_sq / self.energy_n) if self.energy_n else float("nan")

    def force_rmse(self) -> float | None:
        return math.sqrt(self.force_sq / self.force_n) if self.force_n else None

    def metrics(self, prefix: str) -> dict[str, float]:
        """``{prefix}/energy_rmse``, ``energy_mae`` (eV/atom) and, with forces, ``force_rmse``, ``force_mae``
        (per component) and ``force_rmse_vector`` (RMS of |ΔF|, √3 × the per-component RMSE), eV/Å; for a
        committee (errors of its mean) also ``energy_std`` (eV/atom) and ``force_std`` (eV/Å, per component), the
        root mean square of the members' standard deviation."""
        metrics = {f"{prefix}/energy_rmse": self.energy_rmse(), f"{prefix}/energy_mae": self.energy_abs / max(self.energy_n, 1)}
        if self.force_n:
            metrics |= {
                f"{prefix}/force_rmse": self.force_rmse(),
                f"{prefix}/force_rmse_vector": math.sqrt(3.0) * self.force_rmse(),
                f"{prefix}/force_mae": self.force_abs / self.force_n,
            }
        if self.committee and self.energy_n:
            metrics[f"{prefix}/energy_std"] = math.sqrt(self.energy_var / self.energy_n)
        if self.committee and self.force_n:
            metrics[f"{prefix}/force_std"] = math.sqrt(self.force_var / self.force_n)
        return metrics


def error_sums(predictions: Predictions) -> ErrorSums:
    """The pooled errors of ``predictions`` (eV/atom, eV/Å)."""
    sums = ErrorSums()
    ref, pred = predictions.energy_per_atom()
    f_ref, f_pred = predictions.force_components()
    energy_std, force_std = predictions.spread()
    sums.add(
        torch.from_numpy(pred - ref), torch.from_numpy(f_pred - f_ref) if f_ref.size else None,
        torch.from_numpy(energy_std) if energy_std is not None else None,
        torch.from_numpy(force_std) if force_std is not None and f_ref.size else None,
    )
    return sums


def metrics_of(predictions: Predictions, prefix: str) -> dict[str, float]:
    """Pooled errors of ``predictions`` as :meth:`ErrorSums.metrics` names them (eV/atom, eV/Å)."""
    return error_sums(predictions).metrics(prefix)
