"""Exploration: molecular dynamics driven by the current committee, recording frames and the committee's σ on them.

Each trajectory starts from a structure drawn from the labelled data (or ``explore.start_path``), with
Maxwell–Boltzmann velocities at its temperature, and runs ASE's Langevin NVT (``md``) or NPT-Berendsen (``npt``,
periodic cells). Every ``every`` steps a frame is recorded with the σ the committee gives it. A trajectory stops
early when ``patience`` frames in a row are *failed* (σ at or above the high trust level: it has left physical
space) or when the potential cannot evaluate it (atoms on top of each other); its frames up to there are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.nptberendsen import NPTBerendsen
from ase.constraints import FixCom
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from aenet_exp.learning.trust import FAILED, TrustWindow

ENSEMBLES = ("md", "npt")
BY = ("forces", "energy")  # what σ a frame is judged by: the largest per-atom |σ_F| (eV/Å), or σ of E/atom (eV/atom)


@dataclass(frozen=True)
class Exploration:
    """How a generation explores (``explore.*``): temperatures (K), steps per trajectory, timestep (fs),
    trajectories per temperature, steps between recorded frames, failed frames in a row that end a trajectory;
    ``md``: the Langevin friction (1/fs); ``npt``: pressure (GPa), and the Berendsen time constants (fs) and
    compressibility (1/GPa)."""

    ensemble: str
    temperatures: tuple[float, ...]
    steps: int
    timestep: float
    trajectories: int
    every: int
    patience: int
    friction: float | None = None
    pressure: float | None = None
    taut: float = 100.0
    taup: float = 1000.0
    compressibility: float = 0.01


@dataclass
class Frame:
    """A recorded MD frame: the structure (positions Å, cell), where it came from, and the committee's σ on it."""

    atoms: Atoms
    temperature: float
    trajectory: int
    step: int
    force_sigma: float  # largest per-atom |σ_F|, eV/Å
    energy_sigma: float  # σ of the energy per atom, eV/atom

    def sigma(self, by: str) -> float:
        return self.force_sigma if by == "forces" else self.energy_sigma


def committee_sigma(atoms: Atoms) -> tuple[float, float]:
    """The calibrated σ the attached committee calculator gives ``atoms``: the largest per-atom |σ_F| (eV/Å) and σ of
    the energy per atom (eV/atom)."""
    forces_std = atoms.calc.get_property("forces_std", atoms)
    energy_std = atoms.calc.get_property("energy_std", atoms)
    return float(np.linalg.norm(forces_std, axis=1).max(initial=0.0)), float(energy_std) / len(atoms)


def dynamics(atoms: Atoms, exploration: Exploration, temperature: float, rng: np.random.Generator):
    """The ASE integrator of ``exploration.ensemble`` at ``temperature`` K."""
    timestep = exploration.timestep * units.fs
    if exploration.ensemble == "npt":
        return NPTBerendsen(atoms, timestep, temperature_K=temperature, pressure_au=exploration.pressure * units.GPa,
                            taut=exploration.taut * units.fs, taup=exploration.taup * units.fs,
                            compressibility_au=exploration.compressibility / units.GPa)
    return Langevin(atoms, timestep, temperature_K=temperature, friction=exploration.friction / units.fs, fixcm=False,
                    rng=rng)


def trajectory(
    start: Atoms, calculator, exploration: Exploration, temperature: float, number: int, window: TrustWindow, by: str,
    rng: np.random.Generator,
) -> list[Frame]:
    """One trajectory from ``start`` (copied) at ``temperature`` K: its recorded frames (see the module)."""
    atoms = Atoms(start.get_chemical_symbols(), positions=start.get_positions(), cell=start.cell, pbc=start.pbc)
    atoms.calc = calculator
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())  # the centre of mass stays put (no drift of the whole structure)
    integrator = dynamics(atoms, exploration, temperature, rng)
    frames: list[Frame] = []
    failed_in_a_row = 0
    for step in range(exploration.every, exploration.steps + 1, exploration.every):
        try:
            integrator.run(exploration.every)
            force_sigma, energy_sigma = committee_sigma(atoms)
        except ValueError:  # the potential cannot evaluate the structure (overlapping atoms): the trajectory ends
            break
        snapshot = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.cell, pbc=atoms.pbc)
        frame = Frame(snapshot, temperature, number, step, force_sigma, energy_sigma)
        frames.append(frame)
        failed_in_a_row = failed_in_a_row + 1 if window.classify(np.array([frame.sigma(by)]))[0] == FAILED else 0
        if failed_in_a_row >= exploration.patience:
            break
    return frames


def explore(
    starts: Sequence[Atoms], calculator, exploration: Exploration, window: TrustWindow, by: str,
    rng: np.random.Generator,
) -> list[Frame]:
    """Every trajectory of a generation, temperature by temperature, each from a start drawn from ``starts``."""
    frames: list[Frame] = []
    number = 0
    for temperature in exploration.temperatures:
        for _ in range(exploration.trajectories):
            start = starts[int(rng.integers(len(starts)))]
            frames += trajectory(start, calculator, exploration, temperature, number, window, by, rng)
            number += 1
    return frames


def mean_features(descriptor, frames: Sequence[Frame]) -> np.ndarray:
    """Each frame's descriptor vector averaged over its atoms ``(n_frames, n_features)``, each feature standardised
    over the frames (so that no feature's scale rules the distances of farthest-point sampling)."""
    from aenet_exp.calculator import structure_of

    if not frames:
        return np.zeros((0, descriptor.n_features))
    vectors = np.stack([descriptor.featurize(structure_of(f.atoms)).detach().double().mean(0).numpy() for f in frames])
    spread = vectors.std(0)
    return (vectors - vectors.mean(0)) / np.where(spread > 0, spread, 1.0)
