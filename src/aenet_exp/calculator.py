"""An ASE calculator for trained potentials: energy (eV), forces (eV/Å) and stress (eV/Å³)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import all_changes

from aenet_exp.data import Structure
from aenet_exp.data.geometry import overlap_message
from aenet_exp.descriptor.graph import collate_graphs
from aenet_exp.descriptor.neighbors import DEFAULT_SKIN, NeighborReuse, pair_graph
from aenet_exp.model.forces import AnalyticInputs, evaluate
from aenet_exp.model.potential import Potential


def structure_of(atoms: Atoms) -> Structure:
    """The :class:`Structure` of an ASE ``Atoms`` (cell kept only when some direction is periodic)."""
    periodic = bool(np.any(atoms.pbc))
    return Structure(
        atoms.get_chemical_symbols(), atoms.get_positions(), cell=atoms.cell.array if periodic else None, pbc=atoms.pbc
    )


def check_finite(structure: Structure, forces: torch.Tensor) -> None:
    """ValueError naming the overlapping atoms (or saying so) when ``forces`` ``(n_atoms, 3)`` are not finite."""
    if bool(torch.isfinite(forces).all()):
        return
    overlap = overlap_message(structure)
    raise ValueError(f"{structure.source}: {overlap or 'the forces are not finite'}; the potential cannot evaluate this structure")


@dataclass
class Predicted:
    """What :meth:`Calculator.predict` returns: a committee's mean and (calibrated) standard deviation."""

    energies: np.ndarray  # (n_structures,) eV
    forces: list[np.ndarray]  # per structure (n_atoms, 3) eV/Å
    energy_std: np.ndarray | None  # (n_structures,) eV; None for a single potential
    forces_std: list[np.ndarray] | None  # per structure (n_atoms, 3) eV/Å; None for a single potential


def spread(values: torch.Tensor, factor: torch.Tensor) -> np.ndarray:
    """The members' standard deviation (axis 0, unbiased) of ``values``, times the calibration ``factor``, float64."""
    return (values.detach().std(0) * factor).cpu().double().numpy()


class Calculator(AseCalculator):
    """ASE calculator evaluating a :class:`Potential`, float64 by default (float32 for long MD).

    Energies, forces and stress come from the descriptor's analytic derivatives, without an autograd graph of the
    descriptor (:class:`~aenet_exp.model.forces.AnalyticInputs`); a committee's members are evaluated in one pass over
    shared features. Between calls the neighbour list is kept, built with ``skin`` (Å) beyond the cutoff, until some
    atom has moved more than half of it or the atoms or the cell change.

    Stress (periodic cells) is ``(1/V) ∂E/∂ε`` under a homogeneous strain ε of cell and positions,
    in ASE's Voigt order (xx, yy, zz, yz, xz, xy) and units (eV/Å³). A committee gives ASE its members'
    mean, and puts their calibrated standard deviations in ``results["energy_std"]`` (eV) and
    ``results["forces_std"]`` (``(n_atoms, 3)`` eV/Å).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "energy_std", "forces_std"]

    def __init__(self, potential: Potential, dtype: torch.dtype = torch.float64, device: str = "cpu",
                 skin: float = DEFAULT_SKIN, **kwargs):
        super().__init__(**kwargs)
        self.device = torch.device(device)
        self.potential = potential.astype(dtype).to(self.device).eval()
        self.dtype = dtype
        self.neighbors = NeighborReuse(self.potential.descriptor, skin)

    @classmethod
    def load(
        cls, location: str | Path, dtype: torch.dtype = torch.float64, device: str = "cpu", tracking_uri: str | None = None
    ) -> "Calculator":
        """A calculator for the model at ``location`` (see :func:`aenet_exp.tracking.locate.model_path`)."""
        from aenet_exp.tracking.locate import load_potential

        return cls(load_potential(location, tracking_uri), dtype=dtype, device=device)

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        structure = structure_of(self.atoms)
        graph = self.neighbors.graph(structure).to(self.device, self.dtype)
        result = evaluate(self.potential, AnalyticInputs(self.potential.descriptor, graph, strain=structure.is_periodic))
        check_finite(structure, result.forces)
        self.results["energy"] = self.results["free_energy"] = float(result.energy.detach().mean(0).sum())
        self.results["energies"] = result.atom_energies.detach().mean(0).cpu().double().numpy()
        self.results["forces"] = result.forces.detach().mean(0).cpu().double().numpy()
        if self.potential.members > 1:
            self.results["energy_std"] = float(spread(result.energy, self.potential.sigma_scale[0])[0])
            self.results["forces_std"] = spread(result.forces, self.potential.sigma_scale[1])
        if structure.is_periodic:
            volume = abs(float(np.linalg.det(structure.cell)))
            d_strain = result.strain_derivative.detach().mean(0)
            sigma = 0.5 * (d_strain + d_strain.T).cpu().double().numpy() / volume
            self.results["stress"] = sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]

    def predict(self, structures: Sequence[Structure | Atoms], batch_size: int = 64) -> Predicted:
        """Energies and forces of ``structures`` (a committee's mean and calibrated spread), evaluated in batches."""
        items = [s if isinstance(s, Structure) else structure_of(s) for s in structures]
        committee = self.potential.members > 1
        energies, forces, energy_std, forces_std = [np.zeros(0)], [], [np.zeros(0)], []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            split_at = np.cumsum([s.n_atoms for s in chunk])[:-1]
            batch = collate_graphs([pair_graph(self.potential.descriptor, s) for s in chunk]).to(self.device, self.dtype)
            result = evaluate(self.potential, AnalyticInputs(self.potential.descriptor, batch))
            for structure, force in zip(chunk, result.forces.split([s.n_atoms for s in chunk], dim=1)):
                check_finite(structure, force)
            energies.append(result.energy.detach().mean(0).cpu().double().numpy())
            forces += np.split(result.forces.detach().mean(0).cpu().double().numpy(), split_at)
            if committee:
                energy_std.append(spread(result.energy, self.potential.sigma_scale[0]))
                forces_std += np.split(spread(result.forces, self.potential.sigma_scale[1]), split_at)
        if not committee:
            return Predicted(np.concatenate(energies), forces, None, None)
        return Predicted(np.concatenate(energies), forces, np.concatenate(energy_std), forces_std)
