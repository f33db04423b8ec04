"""Predictions of a data set, and the one engine that makes them from batches of a committee's member outputs.

Training feeds the engine from its feature source (graphs, kept features or Jacobians; energies in normalised
units), the calculator from graphs of the structures it is given (energies in eV); both get a committee's mean
and its calibrated σ through :meth:`Calibration.apply <aenet_exp.model.calibration.Calibration.apply>`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from aenet_exp.model.potential import Potential


@dataclass
class Predictions:
    """Reference and predicted labels of a set of structures."""

    indices: np.ndarray  # (n,) structure indices
    energy_ref: np.ndarray  # (n,) eV (NaN: not known)
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

    def energy_std_per_atom(self) -> np.ndarray | None:
        """A committee's standard deviation of the energy per atom ``(n,)`` eV/atom; None for a single potential."""
        return None if self.energy_std is None else self.energy_std / self.n_atoms

    def spread(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A committee's standard deviations: of energies per atom ``(n,)`` eV/atom, and of the force components
        of the structures with forces (flattened, as :meth:`force_components`), eV/Å; Nones for a single potential."""
        if self.energy_std is None:
            return None, None
        pairs = [s for r, s in zip(self.force_ref, self.force_std) if r is not None and s is not None]
        return self.energy_std_per_atom(), (np.concatenate([s.ravel() for s in pairs]) if pairs else np.zeros(0))

    def force_components(self) -> tuple[np.ndarray, np.ndarray]:
        """Flattened reference and predicted force components of the structures with forces."""
        pairs = [(r, p) for r, p in zip(self.force_ref, self.force_pred) if r is not None and p is not None]
        if not pairs:
            return np.zeros(0), np.zeros(0)
        return np.concatenate([r.ravel() for r, _ in pairs]), np.concatenate([p.ravel() for _, p in pairs])

    def energy_errors(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Errors of the (mean) energy per atom and a committee's σ per atom ``(n,)`` eV/atom."""
        reference, predicted = self.energy_per_atom()
        return predicted - reference, self.spread()[0]

    def force_errors(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Errors of the (mean) force components and a committee's σ ``(n_components,)`` eV/Å (structures with
        forces)."""
        reference, predicted = self.force_components()
        return predicted - reference, self.spread()[1]


@dataclass
class BatchOutput:
    """A batch's energies (every structure) and forces (some structures), per committee member."""

    order: list[int]  # structure indices in the order of ``energies``
    energies: torch.Tensor  # (members, n) each member's energies: normalised Σ_i net(f̂_i), or eV (DataSet.offset)
    force_indices: list[int]  # structures of ``forces``, in order (the first of ``order``)
    forces: torch.Tensor | None  # (members, n_force_atoms, 3) eV/Å of force_indices, atoms concatenated
    reference_forces: torch.Tensor | None  # the same atoms' reference forces, eV/Å (None: not known)


@dataclass(frozen=True)
class DataSet:
    """What the engine knows of the structures it predicts, indexed by structure index."""

    energy: np.ndarray  # (n,) reference total energies, eV (NaN: not known)
    n_atoms: np.ndarray  # (n,)
    reference: np.ndarray | None = None  # (n,) Σ of the atoms' reference energies, eV (None: total energies)
    offset: np.ndarray | None = None  # (n,) eV: batches' energies are normalised, E = offset + energy_scale·e (None: eV)


def predictions_of(
    potential: Potential, outputs: Iterable[BatchOutput | None], indices: np.ndarray, data: DataSet
) -> Predictions:
    """The predictions of the structures ``indices`` of ``data`` from ``potential``'s batch ``outputs`` (None: an
    empty batch): a committee's mean, and its members' standard deviation times the potential's calibration; forces
    of the structures the batches have forces of. Reduced in float64 on the host, batch by batch."""
    committee = potential.members > 1
    calibration = potential.calibration
    scale = float(potential.energy_scale) if data.offset is not None else 1.0
    energies: dict[int, tuple[float, float]] = {}
    forces: dict[int, tuple[np.ndarray | None, np.ndarray, np.ndarray | None]] = {}
    for out in outputs:
        if out is None:
            continue
        mean, spread = calibration.apply(out.energies.detach().cpu().double(), "energy", scale)
        energies.update(zip(out.order, zip(mean.tolist(), spread.tolist() if committee else [math.nan] * len(out.order))))
        if out.forces is not None:
            split_at = np.cumsum(data.n_atoms[out.force_indices])[:-1]
            mean, spread = calibration.apply(out.forces.detach().cpu().double(), "force")
            predicted = np.split(mean.numpy(), split_at)
            deviations = np.split(spread.numpy(), split_at) if committee else [None] * len(predicted)
            reference = (np.split(out.reference_forces.detach().cpu().double().numpy(), split_at)
                         if out.reference_forces is not None else [None] * len(predicted))
            forces.update(zip(out.force_indices, zip(reference, predicted, deviations)))
    indices = np.asarray(indices, dtype=int)
    reduced = np.array([energies[int(i)] for i in indices]).reshape(-1, 2)
    energy = reduced[:, 0] if data.offset is None else data.offset[indices] + scale * reduced[:, 0]
    found = [forces.get(int(i), (None, None, None)) for i in indices]
    return Predictions(
        indices=indices,
        energy_ref=data.energy[indices],
        energy_pred=energy,
        n_atoms=data.n_atoms[indices],
        force_ref=[f[0] for f in found],
        force_pred=[f[1] for f in found],
        reference=data.reference[indices] if data.reference is not None else None,
        energy_std=reduced[:, 1] if committee else None,
        force_std=[f[2] for f in found] if committee else [],
    )
