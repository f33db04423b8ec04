"""Errors pooled over an epoch or a prediction pass, and the metrics named after them."""

from __future__ import annotations

import math

import torch

from aenet_exp.training.distributed import Ranks
from aenet_exp.training.events import Predictions


class ErrorSums:
    """Errors pooled over an epoch: per-atom energies (eV/atom) and force components (eV/Å), squared and absolute.

    The sums stay a float64 tensor on the errors' device while batches are added (no host sync per batch);
    they are read, once, when a metric is asked for. Each batch's float32 sums are widened to float64 before
    they are added, exactly as Python floats added them: the totals are the same to the bit.
    """

    def __init__(self):
        self.energy_n, self.force_n = 0, 0
        self._sums: torch.Tensor | None = None  # (4,) float64: energy squared, energy absolute, force squared, absolute
        self._read: tuple[float, float, float, float] | None = (0.0, 0.0, 0.0, 0.0)

    def add(self, energy_error: torch.Tensor, force_error: torch.Tensor | None) -> None:
        energy_error = energy_error.detach()
        parts = [energy_error.square().sum(), energy_error.abs().sum()]
        self.energy_n += energy_error.numel()
        if force_error is not None:
            force_error = force_error.detach()
            parts += [force_error.square().sum(), force_error.abs().sum()]
            self.force_n += force_error.numel()
        values = torch.stack(parts).double()
        if self._sums is None:
            self._sums = values.new_zeros(4)
        self._sums[: len(parts)] += values
        self._read = None

    def _values(self) -> tuple[float, float, float, float]:
        """The four sums as Python floats (one host transfer after any number of :meth:`add`)."""
        if self._read is None:
            self._read = tuple(self._sums.tolist())
        return self._read

    @property
    def energy_sq(self) -> float:
        return self._values()[0]

    @property
    def energy_abs(self) -> float:
        return self._values()[1]

    @property
    def force_sq(self) -> float:
        return self._values()[2]

    @property
    def force_abs(self) -> float:
        return self._values()[3]

    def sum_over(self, ranks: Ranks, device: torch.device) -> None:
        """Add these sums over ranks, in place: every rank then holds the errors of all ranks' structures."""
        if ranks.size == 1:
            return
        e_sq, e_abs, f_sq, f_abs = self._values()
        values = [e_sq, e_abs, self.energy_n, f_sq, f_abs, self.force_n]
        totals = ranks.sum(torch.tensor(values, dtype=torch.float64, device=device)).tolist()
        e_sq, e_abs, e_n, f_sq, f_abs, f_n = totals
        self._sums, self._read = None, (e_sq, e_abs, f_sq, f_abs)
        self.energy_n, self.force_n = int(e_n), int(f_n)

    def energy_rmse(self) -> float:
        return math.sqrt(self.energy_sq / self.energy_n) if self.energy_n else float("nan")

    def force_rmse(self) -> float | None:
        return math.sqrt(self.force_sq / self.force_n) if self.force_n else None

    def metrics(self, prefix: str) -> dict[str, float]:
        """``{prefix}/energy_rmse``, ``energy_mae`` (eV/atom) and, with forces, ``force_rmse``, ``force_mae``
        (per component) and ``force_rmse_vector`` (RMS of |ΔF|, √3 × the per-component RMSE), eV/Å."""
        metrics = {f"{prefix}/energy_rmse": self.energy_rmse(), f"{prefix}/energy_mae": self.energy_abs / max(self.energy_n, 1)}
        if self.force_n:
            metrics |= {
                f"{prefix}/force_rmse": self.force_rmse(),
                f"{prefix}/force_rmse_vector": math.sqrt(3.0) * self.force_rmse(),
                f"{prefix}/force_mae": self.force_abs / self.force_n,
            }
        return metrics


def error_sums(predictions: Predictions) -> ErrorSums:
    """The pooled errors of ``predictions`` (eV/atom, eV/Å)."""
    sums = ErrorSums()
    ref, pred = predictions.energy_per_atom()
    f_ref, f_pred = predictions.force_components()
    sums.add(torch.from_numpy(pred - ref), torch.from_numpy(f_pred - f_ref) if f_ref.size else None)
    return sums


def metrics_of(predictions: Predictions, prefix: str) -> dict[str, float]:
    """Pooled errors of ``predictions`` as :meth:`ErrorSums.metrics` names them (eV/atom, eV/Å)."""
    return error_sums(predictions).metrics(prefix)
