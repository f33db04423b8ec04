"""An ASE calculator for trained potentials: energy (eV), forces (eV/Å) and stress (eV/Å³)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import all_changes

from aenet_exp.data import Structure
from aenet_exp.descriptor import AtomGraph, collate_graphs
from aenet_exp.model import Potential

MODEL_FILE = "potential.pt"
# Where a directory keeps it: a run's output directory; an MLflow pyfunc model (runs:/<run_id>/model).
MODEL_FILE_IN_DIR = (MODEL_FILE, f"artifacts/{MODEL_FILE}")


def structure_of(atoms: Atoms) -> Structure:
    """The :class:`Structure` of an ASE ``Atoms`` (cell kept only when some direction is periodic)."""
    periodic = bool(np.any(atoms.pbc))
    return Structure(
        atoms.get_chemical_symbols(), atoms.get_positions(), cell=atoms.cell.array if periodic else None, pbc=atoms.pbc
    )


def model_path(location: str | Path) -> Path:
    """The model file behind ``location``: a run's output directory, an MLflow model directory, a model
    file, or ``runs:/<run_id>[/path]`` (``runs:/<run_id>`` is the run's ``potential.pt``, ``runs:/<run_id>/model``
    its pyfunc model)."""
    text = str(location)
    path = Path(location)
    if text.startswith("runs:/"):
        from aenet_exp.tracking.artifacts import download_artifact

        run_and_path = text.removeprefix("runs:/").strip("/")
        run_id, _, artifact = run_and_path.partition("/")
        path = download_artifact(run_id, artifact or MODEL_FILE)
    if path.is_dir():
        path = next((path / name for name in MODEL_FILE_IN_DIR if (path / name).is_file()), path / MODEL_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"{location}: no model file (expected a run or MLflow model directory with {MODEL_FILE}, or the file)"
        )
    return path


class Calculator(AseCalculator):
    """ASE calculator evaluating a :class:`Potential`, float64 by default.

    Stress (periodic cells) is ``(1/V) ∂E/∂ε`` under a homogeneous strain ε of cell and positions,
    in ASE's Voigt order (xx, yy, zz, yz, xz, xy) and units (eV/Å³).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential: Potential, dtype: torch.dtype = torch.float64, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.device = torch.device(device)
        self.potential = potential.astype(dtype).to(self.device).eval()
        self.dtype = dtype

    @classmethod
    def load(cls, location: str | Path, dtype: torch.dtype = torch.float64, device: str = "cpu") -> "Calculator":
        """A calculator for the model at ``location`` (see :func:`model_path`)."""
        return cls(Potential.load(model_path(location)), dtype=dtype, device=device)

    def _graph(self, structure: Structure) -> AtomGraph:
        return self.potential.descriptor.graph(structure).to(self.device, self.dtype)

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        structure = structure_of(self.atoms)
        graph = self._graph(structure)
        positions = graph.positions.detach().requires_grad_(True)
        strain = torch.zeros(3, 3, dtype=self.dtype, device=self.device, requires_grad=True)
        deformation = torch.eye(3, dtype=self.dtype, device=self.device) + strain
        strained = graph._replace(positions=positions @ deformation, cells=graph.cells @ deformation)
        with torch.enable_grad():
            atomic = self.potential.atom_energies(self.potential.descriptor(strained), strained.species)
            energy = atomic.sum()
            d_positions, d_strain = torch.autograd.grad(energy, (positions, strain))
        self.results["energy"] = self.results["free_energy"] = float(energy.detach())
        self.results["energies"] = atomic.detach().cpu().double().numpy()
        self.results["forces"] = -d_positions.cpu().double().numpy()
        if structure.is_periodic:
            volume = abs(float(np.linalg.det(structure.cell)))
            sigma = 0.5 * (d_strain + d_strain.T).cpu().double().numpy() / volume
            self.results["stress"] = sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]

    def predict(self, structures: Sequence[Structure | Atoms], batch_size: int = 64) -> tuple[np.ndarray, list[np.ndarray]]:
        """Energies ``(n,)`` eV and forces (per structure ``(n_atoms, 3)`` eV/Å), evaluated in batches."""
        from aenet_exp.model import energy_and_forces

        items = [s if isinstance(s, Structure) else structure_of(s) for s in structures]
        energies, forces = [], []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            batch = collate_graphs([self.potential.descriptor.graph(s) for s in chunk]).to(self.device, self.dtype)
            energy, force = energy_and_forces(self.potential, batch, create_graph=False)
            energies.append(energy.detach().cpu().double().numpy())
            forces += np.split(force.detach().cpu().double().numpy(), np.cumsum([s.n_atoms for s in chunk])[:-1])
        return np.concatenate(energies), forces
