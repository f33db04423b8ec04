"""Write the Cu seed set of ``learn``'s embedded default: 12 EMT-labelled frames of a 32-atom fcc Cu cell.

Each frame is the 2×2×2 conventional cell at a lattice constant between 3.50 and 3.72 Å with every atom displaced by
a seeded Gaussian of 0.02–0.20 Å (compressed and strongly displaced frames show the potential the repulsive wall), labelled with ASE's EMT (energy eV, forces eV/Å, stress eV/Å³). Run from the
repository root: ``python scripts/make_cu_seed.py`` (deterministic; rewrites src/aenet_exp/data/sample/cu-emt-seed.xyz).
"""

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

OUT = Path(__file__).resolve().parents[1] / "src" / "aenet_exp" / "data" / "sample" / "cu-emt-seed.xyz"


def frame(lattice: float, rattle: float, seed: int):
    atoms = bulk("Cu", "fcc", a=lattice, cubic=True).repeat((2, 2, 2))
    atoms.rattle(rattle, seed=seed)
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def isolated_atom_energy() -> float:
    atom = Atoms("Cu", positions=[[0, 0, 0]])
    atom.calc = EMT()
    return atom.get_potential_energy()


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    settings = zip(rng.permutation(np.linspace(3.50, 3.72, 12)), np.linspace(0.02, 0.20, 12), range(12))
    frames = [frame(a, r, s) for a, r, s in settings]
    write(OUT, frames, format="extxyz")
    print(f"wrote {len(frames)} frames to {OUT}; EMT's isolated Cu atom: {isolated_atom_energy():.9f} eV")
