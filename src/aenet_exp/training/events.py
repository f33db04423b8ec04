"""What training tells its callbacks (tracking, checkpoints, progress): plain data only, never a way back in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Predictions:
    """Reference and predicted labels of a set of structures."""

    indices: np.ndarray  # (n,) structure indices
    energy_ref: np.ndarray  # (n,) eV
    energy_pred: np.ndarray  # (n,) eV
    n_atoms: np.ndarray  # (n,)
    force_ref: list[np.ndarray | None] = field(default_factory=list)  # per structure (n_atoms, 3) eV/Å
    force_pred: list[np.ndarray | None] = field(default_factory=list)  # per structure (n_atoms, 3) eV/Å
    reference: np.ndarray | None = None  # (n,) Σ of the atoms' reference energies, eV (None: total energies)
    energy_std: np.ndarray | None = None  # (n,) eV, a committee's standard deviation (None: a single potential)
    force_std: list[np.ndarray | None] = field(default_factory=list)  # per structure (n_atoms, 3) eV/Å, a committee's

    def energy_per_atom(self) -> tuple[np.ndarray, np.ndarray]:
        return self.energy_ref / self.n_atoms, self.energy_pred / self.n_atoms

    def relative_energy_per_atom(self) -> tuple[np.ndarray, np.ndarray]:
        """Reference and predicted energies per atom minus the atoms' reference energies (eV/atom): the
        cohesive energies, on the scale where the errors show (total energies when there are no references)."""
        offset = 0.0 if self.reference is None else self.reference
        return (self.energy_ref - offset) / self.n_atoms, (self.energy_pred - offset) / self.n_atoms

    def spread(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A committee's standard deviations: of energies per atom ``(n,)`` eV/atom, and of the force components
        of the structures with forces (flattened, as :meth:`force_components`), eV/Å; Nones for a single potential."""
        if self.energy_std is None:
            return None, None
        pairs = [s for r, s in zip(self.force_ref, self.force_std) if r is not None and s is not None]
        return self.energy_std / self.n_atoms, (np.concatenate([s.ravel() for s in pairs]) if pairs else np.zeros(0))

    def force_components(self) -> tuple[np.ndarray, np.ndarray]:
        """Flattened reference and predicted force components of the structures with forces."""
        pairs = [(r, p) for r, p in zip(self.force_ref, self.force_pred) if r is not None and p is not None]
        if not pairs:
            return np.zeros(0), np.zeros(0)
        return np.concatenate([r.ravel() for r, _ in pairs]), np.concatenate([p.ravel() for _, p in pairs])


@dataclass
class TrainingResult:
    history: dict[str, list[float]]  # metric name -> per-epoch values
    metrics: dict[str, float]  # final values
    predictions: dict[str, Predictions]  # 'train', 'test'
    output_dir: Path


class Callback:
    """A side job of training, told what happens and never reaching back into the loop.

    Hooks, in order: :meth:`on_start` (the resolved config and dataset facts, before the first
    epoch); per epoch :meth:`on_epoch_start`, :meth:`on_batch_end` after each optimiser step and
    :meth:`on_epoch_end` with the epoch's metrics; :meth:`on_fit_end` after the last epoch;
    :meth:`on_end` with the final result, or :meth:`on_failure` when training raised. A callback
    may set :attr:`stop_requested` to end training after the current epoch (early stopping).
    """

    stop_requested: bool = False

    def on_start(self, config: dict, facts: dict) -> None: ...

    def on_epoch_start(self, epoch: int) -> None: ...

    def on_batch_end(self) -> None: ...

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_fit_end(self, epochs_done: int) -> None: ...

    def on_end(self, result: TrainingResult) -> None: ...

    def on_failure(self, error: BaseException) -> None: ...
