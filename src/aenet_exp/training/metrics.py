"""Errors pooled over an epoch or a prediction pass, and the metrics named after them."""

from __future__ import annotations

import math

import torch

from aenet_exp.training.distributed import Ranks
from aenet_exp.training.events import Predictions


class ErrorSums:
    """Errors pooled over an epoch: per-atom energies (eV/atom) and force components (eV/Å), squared and absolute;
    for a committee, of its mean prediction, with the members' variances (the spread)."""

    def __init__(self):
        self.energy_sq, self.energy_abs, self.energy_n = 0.0, 0.0, 0
        self.force_sq, self.force_abs, self.force_n = 0.0, 0.0, 0
        self.energy_var, self.force_var = None, None  # Σ σ² of a committee's members (None: a single potential)

    def add_members(self, energy_error: torch.Tensor, force_error: torch.Tensor | None) -> None:
        """Add the members' errors ``(members, n)`` eV/atom and ``(members, n_force_atoms, 3)`` eV/Å: those of
        their mean, and with several members their spread (unbiased standard deviation over members)."""
        energy_error = energy_error.detach()
        force_error = force_error.detach() if force_error is not None else None
        committee = energy_error.shape[0] > 1
        self.add(
            energy_error.mean(0), force_error.mean(0) if force_error is not None else None,
            energy_error.std(0) if committee else None,
            force_error.std(0) if committee and force_error is not None else None,
        )

    def add(
        self, energy_error: torch.Tensor, force_error: torch.Tensor | None,
        energy_std: torch.Tensor | None = None, force_std: torch.Tensor | None = None,
    ) -> None:
        """Add errors ``(n,)`` eV/atom and ``(n_force_atoms, 3)`` eV/Å, and a committee's standard deviations of the
        same shapes."""
        energy_error = energy_error.detach()
        self.energy_sq += float(energy_error.square().sum())
        self.energy_abs += float(energy_error.abs().sum())
        self.energy_n += energy_error.numel()
        if energy_std is not None:
            self.energy_var = (self.energy_var or 0.0) + float(energy_std.square().sum())
        if force_error is not None:
            force_error = force_error.detach()
            self.force_sq += float(force_error.square().sum())
            self.force_abs += float(force_error.abs().sum())
            self.force_n += force_error.numel()
            if force_std is not None:
                self.force_var = (self.force_var or 0.0) + float(force_std.square().sum())

    def sum_over(self, ranks: Ranks, device: torch.device) -> None:
        """Add these sums over ranks, in place: every rank then holds the errors of all ranks' structures."""
        if ranks.size == 1:
            return
        values = [self.energy_sq, self.energy_abs, self.energy_n, self.force_sq, self.force_abs, self.force_n,
                  self.energy_var or 0.0, self.force_var or 0.0]
        totals = ranks.sum(torch.tensor(values, dtype=torch.float64, device=device)).tolist()
        e_sq, e_abs, e_n, f_sq, f_abs, f_n, e_var, f_var = totals
        self.energy_sq, self.energy_abs, self.energy_n = e_sq, e_abs, int(e_n)
        self.force_sq, self.force_abs, self.force_n = f_sq, f_abs, int(f_n)
        if self.energy_var is not None:  # a committee: every rank has some variance term (or an empty share)
            self.energy_var, self.force_var = e_var, (f_var if self.force_var is not None else None)

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
        if self.energy_var is not None and self.energy_n:
            metrics[f"{prefix}/energy_std"] = math.sqrt(self.energy_var / self.energy_n)
        if self.force_var is not None and self.force_n:
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
