"""An ASE calculator for trained potentials: energy (eV), forces (eV/Å) and stress (eV/Å³)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
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
from aenet_exp.evaluation.predictions import BatchOutput, DataSet, Predictions, predictions_of
from aenet_exp.model.forces import AnalyticInputs, evaluate
from aenet_exp.model.locate import load_potential
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
        """A calculator for the model at ``location`` (see :func:`aenet_exp.model.locate.model_path`)."""
        return cls(load_potential(location, tracking_uri), dtype=dtype, device=device)

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        structure = structure_of(self.atoms)
        graph = self.neighbors.graph(structure).to(self.device, self.dtype)
        result = evaluate(self.potential, AnalyticInputs(self.potential.descriptor, graph, strain=structure.is_periodic))
        check_finite(structure, result.forces)
        calibration = self.potential.calibration
        energy, energy_std = calibration.apply(result.energy.detach().cpu().double(), "energy")
        forces, forces_std = calibration.apply(result.forces.detach().cpu().double(), "force")
        self.results["energy"] = self.results["free_energy"] = float(energy[0])
        self.results["energies"] = result.atom_energies.detach().mean(0).cpu().double().numpy()
        self.results["forces"] = forces.numpy()
        if energy_std is not None:
            self.results["energy_std"] = float(energy_std[0])
            self.results["forces_std"] = forces_std.numpy()
        if structure.is_periodic:
            volume = abs(float(np.linalg.det(structure.cell)))
            d_strain = result.strain_derivative.detach().mean(0)
            sigma = 0.5 * (d_strain + d_strain.T).cpu().double().numpy() / volume
            self.results["stress"] = sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]

    def predict(self, structures: Sequence[Structure | Atoms], batch_size: int = 64) -> Predictions:
        """Energies and forces of ``structures`` (a committee's mean and calibrated spread), evaluated ``batch_size``
        at a time; with the structures' own energies and forces as the references (NaN and None where they have none).
        """
        items = [s if isinstance(s, Structure) else structure_of(s) for s in structures]
        known = DataSet(
            energy=np.array([np.nan if s.energy is None else s.energy for s in items], dtype=float),
            n_atoms=np.array([s.n_atoms for s in items], dtype=int),
        )
        predictions = predictions_of(self.potential, self._outputs(items, batch_size), np.arange(len(items)), known)
        return replace(predictions, force_ref=[s.forces for s in items])

    def _outputs(self, items: list[Structure], batch_size: int) -> Iterator[BatchOutput]:
        """Each batch's member energies (eV) and forces of every structure, checked to be finite."""
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            batch = collate_graphs([pair_graph(self.potential.descriptor, s) for s in chunk]).to(self.device, self.dtype)
            result = evaluate(self.potential, AnalyticInputs(self.potential.descriptor, batch))
            for structure, force in zip(chunk, result.forces.split([s.n_atoms for s in chunk], dim=1)):
                check_finite(structure, force)
            order = list(range(start, start + len(chunk)))
            yield BatchOutput(order, result.energy, order, result.forces, None)
