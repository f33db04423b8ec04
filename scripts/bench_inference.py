"""µs per atom-step of a trained potential's energy and forces: the ASE calculator against ænet's Fortran ``predict.x``.

The potential has the published TiO2 descriptor (radial 20 / 6.5 Å, angular 6 / 5.0 Å, 56 features) and 2×5 tanh
networks per species (``experiment=tio2_published``); weights are drawn from seeds and the feature normalisation is
fitted on the cells measured, which is all the timing depends on. Structures: the largest (95-atom) cell of
``shared/data/tio2-1000`` and its 2×2×2 and 3×3×3 supercells.

For each structure, thread count (``--threads``, default 1,2), dtype (float64, float32) and committee size (K = 1, 5)
the calculator evaluates energy, forces and stress of ``--steps`` MD-like steps (every atom moved by a seeded 0.01 Å
Gaussian each step, so the neighbour list is kept as in MD); µs per atom-step is the median step time over the atoms.
"before" is the autograd path this project used until now (descriptor under autograd, lists built every call), K = 1
and 5, float64. With ``AENET_PREDICT`` and ``AENET_NNASCII2BIN`` (paths of ænet's ``predict.x`` and aenet-PyTorch's
``nnASCII2bin.x``, see docs/inference.md), the K = 1 potential is exported, converted, and ``predict.x`` evaluates
the same structures with forces, once and ``--copies`` times in one run: its per-structure time is the difference
over the extra copies (start-up subtracted), measured in every repeat right after the calculator's one-thread rows
of the same cell (the median over repeats is shown). ``predict.x`` is serial: compare with the one-thread rows.

Last, ASE Langevin MD (100 steps, 300 K) of the 95-atom cell with the K = 5 committee: steps per second.

Usage::

    python scripts/bench_inference.py [--shared PATH] [--steps 30] [--threads 1,2] [--copies 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator as AseCalculator

from aenet_exp.calculator import Calculator, structure_of
from aenet_exp.data import read_structures
from aenet_exp.descriptor import ChebyshevDescriptor
from aenet_exp.export.aenet_ascii import write_aenet_ascii
from aenet_exp.export.aenet_fortran import predict_input, programs, run_predict, to_binary, write_xsf
from aenet_exp.model import Potential
from aenet_exp.model.forces import GraphInputs, evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import DEFAULT_SHARED, machine_description, tio2_tarball  # noqa: E402

SPECIES = ["O", "Ti"]
PUBLISHED = dict(rad_order=20, rad_cutoff=6.5, ang_order=6, ang_cutoff=5.0)


class AutogradCalculator(Calculator):
    """The path before the analytic one: the descriptor under autograd, neighbour lists built every call."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        AseCalculator.calculate(self, atoms, properties, system_changes or [])
        structure = structure_of(self.atoms)
        graph = self.potential.descriptor.graph(structure).to(self.device, self.dtype)
        result = evaluate(self.potential, GraphInputs(self.potential.descriptor, graph, strain=True))
        self.results["energy"] = float(result.energy.detach().mean(0).sum())
        self.results["forces"] = result.forces.detach().mean(0).double().numpy()
        self.results["stress"] = np.zeros(6)


def largest_cell(tarball: Path) -> Atoms:
    """The cell with the most atoms among TiO2-1000's structures."""
    structures = read_structures(tarball)
    largest = max(structures, key=lambda s: s.n_atoms)
    return Atoms(largest.species, positions=largest.positions, cell=largest.cell, pbc=True)


def committee(members: int, cells: list[Atoms]) -> Potential:
    """The published descriptor with 2×5 tanh networks, ``members`` of them per species, normalised on ``cells``."""
    torch.manual_seed(0)
    descriptor = ChebyshevDescriptor(SPECIES, **PUBLISHED, dtype=torch.float64)
    layout = {s: [5, 5] for s in SPECIES}
    potential = Potential(descriptor, layout, {s: ["tanh", "tanh"] for s in SPECIES}, members=members,
                          seeds=list(range(members)))
    features = torch.cat([descriptor.featurize(structure_of(a)) for a in cells])
    potential.set_normalization(features.mean(0), features.std(0).clamp(min=1e-6), energy_shift=-7.0, energy_scale=1.0,
                                atomic_energies={"O": -432.503149303, "Ti": -1604.604515075})
    return potential.eval()


def step_times(calculator, atoms: Atoms, steps: int) -> float:
    """Median seconds per MD-like step (every atom moved by a seeded 0.01 Å Gaussian): energy, forces, stress."""
    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(0)
    times = []
    for step in range(steps + 2):
        atoms.positions += rng.normal(0.0, 0.01, atoms.positions.shape)
        start = time.perf_counter()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        if step >= 2:  # the first calls build the lists and warm up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def fortran_per_structure(potentials: dict[int, Potential], atoms: Atoms, copies: int, scratch: Path) -> float | None:
    """Seconds per structure of ``predict.x`` on ``atoms`` with forces (start-up subtracted), or None without the
    programs (``AENET_PREDICT``, ``AENET_NNASCII2BIN``)."""
    found = programs()
    if found is None:
        return None
    predict, converter = found
    directory = scratch / f"fortran-{len(atoms)}"
    directory.mkdir(exist_ok=True)  # each repeat converts and writes anew: the same files
    networks = to_binary(converter, write_aenet_ascii(potentials[1], directory))
    write_xsf(directory / "cell.xsf", atoms.get_chemical_symbols(), atoms.positions, atoms.cell.array)

    def seconds(count: int) -> float:
        text = predict_input(networks, [directory / "cell.xsf"] * count, forces=True)
        start = time.perf_counter()
        run_predict(predict, text, directory)
        return time.perf_counter() - start

    one = min(seconds(1) for _ in range(3))
    many = min(seconds(1 + copies) for _ in range(3))
    return (many - one) / copies


def md_steps_per_second(potential: Potential, atoms: Atoms) -> float:
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.units import fs

    atoms = atoms.copy()
    atoms.calc = Calculator(potential)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dynamics = Langevin(atoms, 1.0 * fs, temperature_K=300, friction=0.01 / fs, fixcm=False, rng=np.random.default_rng(1))
    dynamics.run(2)
    start = time.perf_counter()
    dynamics.run(100)
    return 100 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tarball = tio2_tarball(args.shared)
    if tarball is None:
        return
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        cell = largest_cell(tarball)
        cells = {"1×1×1": cell, "2×2×2": cell.repeat(2), "3×3×3": cell.repeat(3)}
        potentials = {k: committee(k, [cell]) for k in (1, 5)}
        print(machine_description())
        rows: dict[tuple, list[float]] = {}
        fortran: dict[str, list[float]] = {}
        for _ in range(args.repeats):  # interleaved, so that a change of load hits every row alike
            for threads in [int(t) for t in args.threads.split(",")]:
                torch.set_num_threads(threads)
                for name, atoms in cells.items():
                    for dtype in (torch.float64, torch.float32):
                        for k, potential in potentials.items():
                            seconds = step_times(Calculator(potential, dtype=dtype), atoms, args.steps)
                            rows.setdefault((name, threads, str(dtype)[6:], k), []).append(seconds / len(atoms))
                    if threads == 1:
                        for k, potential in potentials.items():
                            seconds = step_times(AutogradCalculator(potential), atoms, max(5, args.steps // 5))
                            rows.setdefault((name, 1, "before", k), []).append(seconds / len(atoms))
                        seconds = fortran_per_structure(potentials, atoms, args.copies, scratch)
                        if seconds is not None:
                            fortran.setdefault(name, []).append(seconds)
        torch.set_num_threads(1)
        md = md_steps_per_second(potentials[5], cell)
    report(rows, fortran, md, {name: len(atoms) for name, atoms in cells.items()})


def report(rows: dict, fortran_times: dict, md: float, sizes: dict) -> None:
    median = {key: 1e6 * statistics.median(values) for key, values in rows.items()}
    fortran = {name: statistics.median(values) for name, values in fortran_times.items()}
    print("\nµs per atom-step (energy, forces, stress), median over steps and repeats:\n")
    print("| cell | atoms | threads | dtype | K = 1 | K = 5 | K = 5 / K = 1 | predict.x (K = 1) | K = 1 / predict.x |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for (name, threads, dtype, k), value in sorted(median.items()):
        if k != 1:
            continue
        five = median.get((name, threads, dtype, 5))
        ratio = f"{five / value:.2f}" if five else ""
        reference = fortran.get(name) if threads == 1 and dtype != "before" else None
        fortran_us = f"{1e6 * reference / sizes[name]:.1f}" if reference else ""
        versus = f"{value / (1e6 * reference / sizes[name]):.2f}" if reference else ""
        print(f"| {name} | {sizes[name]} | {threads} | {dtype} | {value:.1f} | {five:.1f} | {ratio} | {fortran_us} | "
              f"{versus} |")
    cell = median[("1×1×1", 1, "float64", 1)]
    for name in ("2×2×2", "3×3×3"):
        print(f"per-atom cost of the {name} supercell / the cell (1 thread, float64, K = 1): "
              f"{median[(name, 1, 'float64', 1)] / cell:.2f}")
    print(f"ASE Langevin MD, 95-atom cell, K = 5 committee, 1 thread: {md:.1f} steps/s")


if __name__ == "__main__":
    main()
