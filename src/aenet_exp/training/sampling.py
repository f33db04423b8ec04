"""``sampling.*``: which training structures fill each epoch's batches.

``uniform`` (the default) is every training structure once per epoch, shuffled. The weighted
policies draw as many structures per epoch with replacement, with probabilities proportional to
a weight per structure:

- ``energy_weighted`` (the reference's rule): ``w = 1 / (1 + Δ/Δmax)`` with ``Δ`` a structure's energy
  per atom above the training split's lowest (in the training target's space), so weights run
  from 1 (lowest) to 0.5 (highest); all 1 when every ``Δ`` is 0.
- ``error_weighted``: uniform in the first epoch; then each structure's weight is its most recent
  absolute energy error per atom (the mean over its draws in the last epoch that drew it),
  normalised to unit mean; non-finite or negative errors count as zero, structures not drawn yet
  as the mean error, and all-zero weights fall back to uniform. Force errors do not change them.
"""

from __future__ import annotations

import numpy as np
import torch

from aenet_exp.training.distributed import SINGLE, Ranks


def energy_weights(per_atom: np.ndarray) -> np.ndarray:
    """``1 / (1 + Δ/Δmax)`` of energies per atom ``(n,)`` (eV/atom): 1 for the lowest, 0.5 for the highest."""
    delta = per_atom - per_atom.min()
    top = delta.max()
    return np.ones_like(delta) if top == 0 else 1.0 / (1.0 + delta / top)


def error_weights(errors: np.ndarray) -> np.ndarray:
    """Weights of unit mean from each structure's latest absolute error per atom ``(n,)`` (NaN: not drawn yet)."""
    known = np.isfinite(errors)
    filled = np.where(known, errors, np.nanmean(errors) if known.any() else 0.0)
    filled = np.where(np.isfinite(filled) & (filled > 0), filled, 0.0)
    if filled.sum() == 0:
        return np.ones_like(filled)
    return filled / filled.mean()


class EpochSampling:
    """The structures of each epoch, in batch order, drawn by policy ``name`` from ``train``.

    Args:
        train: the training structure indices ``(n_train,)``.
        per_atom: energies per atom of all structures ``(n_structures,)`` in the training target's space (eV/atom).
        rng: the seeded generator of the batch order (``seed`` + the shuffle offset).
        ranks: the training processes: the errors each sees are added over them.
    """

    def __init__(self, name: str, train: np.ndarray, per_atom: np.ndarray, rng: np.random.Generator,
                 ranks: Ranks = SINGLE):
        self.name = name
        self.train = np.asarray(train)
        self.rng = rng
        self.ranks = ranks
        self.weights = energy_weights(per_atom[self.train]) if name == "energy_weighted" else np.ones(len(self.train))
        self.position = {int(index): k for k, index in enumerate(self.train)}
        self.errors = np.full(len(self.train), np.nan)  # latest |energy error| per atom, eV/atom (error_weighted)
        self.epoch_sum = np.zeros(len(self.train))
        self.epoch_count = np.zeros(len(self.train))

    @property
    def weighted(self) -> bool:
        return self.name != "uniform"

    def epoch_order(self) -> np.ndarray:
        """This epoch's structures in order: a shuffle of all (uniform), else ``n_train`` weighted draws."""
        if not self.weighted:
            return self.rng.permutation(self.train)
        if self.name == "error_weighted":
            self.weights = error_weights(self.errors)
        return self.rng.choice(self.train, size=len(self.train), replace=True, p=self.weights / self.weights.sum())

    def observe(self, indices: list[int], energy_error: torch.Tensor) -> None:
        """The energy errors per atom ``(n,)`` (eV/atom) of a batch's structures ``indices`` (error_weighted)."""
        if self.name != "error_weighted" or not len(indices):
            return
        rows = [self.position[int(i)] for i in indices]
        np.add.at(self.epoch_sum, rows, energy_error.detach().abs().cpu().double().numpy())
        np.add.at(self.epoch_count, rows, 1.0)

    def end_epoch(self, device: torch.device) -> dict[str, float]:
        """Fold the epoch's errors in (summed over ranks) and the weights' spread as metrics (unit mean)."""
        if self.name == "error_weighted":
            sums = self.ranks.sum(torch.from_numpy(np.concatenate([self.epoch_sum, self.epoch_count])).to(device))
            total, count = sums.cpu().numpy().reshape(2, -1)
            drawn = count > 0
            self.errors[drawn] = total[drawn] / count[drawn]
            self.epoch_sum[:], self.epoch_count[:] = 0.0, 0.0
        if not self.weighted:
            return {}
        w = self.weights / self.weights.mean()
        return {"sampling/weight_min": float(w.min()), "sampling/weight_max": float(w.max()),
                "sampling/weight_std": float(w.std())}

    def state_dict(self) -> dict:
        return {"errors": torch.from_numpy(self.errors.copy()), "weights": torch.from_numpy(self.weights.copy())}

    def load_state_dict(self, state: dict) -> None:
        self.errors = state["errors"].numpy().copy()
        self.weights = state["weights"].numpy().copy()
