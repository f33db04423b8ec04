"""A K = 5 committee on TiO2-1000 (``experiment=tio2_fast committee=deep``): its uncertainty, and what ``select`` picks.

1. Trains ``python -m aenet_exp train experiment=tio2_fast committee=deep`` through the CLI (5 members from the seeds
   0..4, 10 % of the training split held out to calibrate σ, the default of ``committee=deep``), recorded in the MLflow
   store ``--tracking-uri``, with the test set's predicted energies and forces saved
   (``tracking.save_energies/save_forces``). Prints the test RMSE of the committee's mean, and the NLL, Spearman ρ
   and miscalibration area of the energy per atom and of the force components with the calibrated σ and
   uncalibrated, and the calibration factors (read back from MLflow).
2. Builds a pool, written as one extended XYZ file: the run's test structures (read from the tarball by the
   ``source`` column of ``energies.test.predicted``, their DFT energy and forces kept), and for each of them three
   unlabelled variants — cell and positions scaled by 1 − ``--strain`` and by 1 + ``--strain``, and the positions
   rattled by a Gaussian of ``--rattle`` Å per component (seeded with ``--seed``).
3. Runs ``python -m aenet_exp select run=<run dir> pool=<pool.xyz> n=--n by=energy`` and ``by=forces``
   (``tracking.enabled=false``) and reports (a) the fraction of the selected structures that are perturbed (against the
   pool's fraction, what a random pick gives), and (b) for the selected unperturbed (labelled) structures, the
   fraction whose actual error of the committee's mean — |ΔE| per atom, and the largest per-atom |ΔF| — is above
   the median over the labelled pool structures (a random pick: 0.5). As the perturbed structures fill nearly all of
   the top ``--n``, ``select`` is also run on the labelled structures alone (``pool_labelled.xyz``, top
   ``--n-labelled``), where (b) has enough structures to say something. The actual errors are the run's own test
   predictions (the same saved potential that ``select`` loads); ``select``'s mean energy is checked against them.

Needs ``../shared`` (the TiO2 data); exits with a message when it is absent.

Usage::

    python scripts/committee_tio2.py [--iterations 1100] [--members 5] [--n 50] [--n-labelled 25] [--strain 0.05] [--rattle 0.1]
        [--seed 0] [--run-dir DIR] [--reuse] [overrides ...]

Extra arguments are Hydra overrides for the training. ``--reuse`` skips the training when ``--run-dir`` already
holds a finished run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import DEFAULT_SHARED, machine_description, tio2_tarball

ROOT = Path(__file__).resolve().parents[1]
CRITERIA = ("energy", "forces")
E_ATOMIC = "normalization.E_atomic={O: -432.503149303, Ti: -1604.604515075}"  # data=tio2's, dropped with data.path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared folder")
    parser.add_argument("--iterations", type=int, default=1100, help="epochs (tio2_fast: 1100)")
    parser.add_argument("--members", type=int, default=5, help="committee members K")
    parser.add_argument("--n", type=int, default=50, help="structures selected")
    parser.add_argument("--n-labelled", type=int, default=25, help="structures selected from the labelled part alone")
    parser.add_argument("--strain", type=float, default=0.05, help="cell and positions scaled by 1 ∓ this")
    parser.add_argument("--rattle", type=float, default=0.1, help="Å, standard deviation per Cartesian component")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rattling")
    parser.add_argument("--run-dir", type=Path, default=None, help="the run directory (default outputs/committee/<time>)")
    parser.add_argument("--reuse", action="store_true", help="use the finished run in --run-dir, train nothing")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'outputs' / 'mlflow.db'}")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the training")
    return parser.parse_args(argv)


def train(args: argparse.Namespace, tarball: Path, run_dir: Path) -> float:
    """The committee, trained through the CLI in the project root; its wall time (s)."""
    command = [
        sys.executable, "-m", "aenet_exp", "train", "experiment=tio2_fast", "committee=deep",
        f"committee.members={args.members}", f"data.path={tarball}", E_ATOMIC, f"iterations={args.iterations}",
        "tracking.save_energies=true", "tracking.save_forces=true", "tracking.show_progress=false",
        f"tracking.uri={args.tracking_uri}", "tracking.experiment=committee", f"tracking.run_name=tio2_fast_K{args.members}",
        f"hydra.run.dir={run_dir}", *args.overrides,
    ]
    print(f"== {' '.join(command[3:])}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    return time.perf_counter() - start


def final_metrics(run_dir: Path, tracking_uri: str) -> tuple[str, dict[str, float]]:
    import mlflow

    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    return run_id, mlflow.MlflowClient(tracking_uri).get_run(run_id).data.metrics


def metrics_table(m: dict[str, float]) -> str:
    """Test errors of the mean, and the uncertainty metrics before and after calibration."""
    def get(key: str, factor: float = 1.0, digits: int = 3) -> str:
        value = m.get(key)
        return "–" if value is None else f"{value * factor:.{digits}f}"

    lines = [
        "| test set | energy (per atom) | force (components) |",
        "|---|---:|---:|",
        (f"| RMSE of the mean | {get('final/test/energy_rmse', 1000, 2)} meV/atom | {get('final/test/force_rmse')} eV/Å "
         f"(\\|ΔF\\| {get('final/test/force_rmse_vector')}) |"),
    ]
    for name in ("nll", "miscalibration_area"):
        for suffix, when in (("_uncalibrated", "uncalibrated"), ("", "calibrated")):
            lines.append(f"| {name.replace('_', ' ')} ({when}) | {get(f'final/test/energy_{name}{suffix}')} | "
                         f"{get(f'final/test/force_{name}{suffix}')} |")
    lines.append(f"| Spearman ρ (σ vs \\|error\\|; per atom for forces) | {get('final/test/energy_spearman')} | "
                 f"{get('final/test/force_spearman')} |")
    lines.append(f"| calibration factor (σ multiplied by) | {get('final/calibration/energy_factor')} | "
                 f"{get('final/calibration/force_factor')} |")
    return "\n".join(lines)


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """A prediction file's column names and rows (split on whitespace)."""
    lines = path.read_text().splitlines()
    names = lines[0].lstrip("#").replace("(eV/Å)", "").split()
    return names, [line.split() for line in lines[1:] if line.strip()]


def test_errors(run_dir: Path) -> dict[tuple[str, int], dict[str, float]]:
    """Per test structure (source, frame): |ΔE| per atom (eV/atom), largest per-atom |ΔF| (eV/Å), the predicted energy."""
    names, rows = read_table(run_dir / "energies.test.predicted")
    col = {n: i for i, n in enumerate(names)}
    errors = {}
    for r in rows:
        key = (r[col["source"]], int(r[col["frame"]]))
        errors[key] = {"energy": abs(float(r[col["E_pred_eV_per_atom"]]) - float(r[col["E_ref_eV_per_atom"]])),
                       "E_pred": float(r[col["E_pred_eV"]]), "force": 0.0}
    names, rows = read_table(run_dir / "forces.test.predicted")
    col = {n: i for i, n in enumerate(names)}
    for r in rows:
        key = (r[col["source"]], int(r[col["frame"]]))
        ref = np.array([float(r[col[f"F{c}_ref"]]) for c in "xyz"])
        pred = np.array([float(r[col[f"F{c}_pred"]]) for c in "xyz"])
        errors[key]["force"] = max(errors[key]["force"], float(np.linalg.norm(pred - ref)))
    return errors


def build_pool(tarball: Path, keys: list[tuple[str, int]], strain: float, rattle: float, seed: int, out: Path) -> list[dict]:
    """Write the pool (labelled test structures, then their unlabelled variants) to ``out``; one entry per frame:
    its kind and, for the labelled ones, the (source, frame) key of its test prediction."""
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from aenet_exp.data import read_structures

    by_key = {(s.source, s.frame): s for s in read_structures(tarball)}
    originals = [by_key[key] for key in keys]
    rng = np.random.default_rng(seed)
    images, entries = [], []
    for key, s in zip(keys, originals):
        atoms = Atoms(s.species, positions=s.positions, cell=s.cell, pbc=s.pbc)
        atoms.calc = SinglePointCalculator(atoms, energy=s.energy, forces=s.forces)
        atoms.info["pool_kind"] = "test"
        images.append(atoms)
        entries.append({"kind": "test", "key": key})
    variants = [(f"strain {1 - strain:g}", 1 - strain), (f"strain {1 + strain:g}", 1 + strain), (f"rattle {rattle:g} Å", None)]
    for kind, scale in variants:
        for key, s in zip(keys, originals):
            if scale is not None:
                atoms = Atoms(s.species, positions=s.positions * scale, cell=s.cell * scale, pbc=s.pbc)
            else:
                atoms = Atoms(s.species, positions=s.positions + rng.normal(0.0, rattle, s.positions.shape), cell=s.cell,
                              pbc=s.pbc)
            atoms.info["pool_kind"] = kind
            images.append(atoms)
            entries.append({"kind": kind, "key": key})
    ase.io.write(out, images, format="extxyz")
    ase.io.write(out.with_name(f"{out.stem}_labelled{out.suffix}"), images[: len(keys)], format="extxyz")
    return entries


def select(run_dir: Path, pool: Path, n: int, by: str, out: Path) -> list[dict]:
    """``select`` through the CLI; the info of every selected frame, in rank order."""
    import ase.io

    command = [sys.executable, "-m", "aenet_exp", "select", f"run={run_dir}", f"pool={pool}", f"n={n}", f"out={out}",
               f"by={by}", "tracking.enabled=false"]
    print(f"== {' '.join(command[3:])}", flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    return [dict(atoms.info) for atoms in ase.io.read(out, index=":")]


def analyse(selected: list[dict], entries: list[dict], errors: dict) -> dict:
    """Fraction perturbed; for the labelled selected structures, the fraction above the labelled pool's median error."""
    kinds = [entries[info["pool_index"]]["kind"] for info in selected]
    labelled = [entries[info["pool_index"]]["key"] for info in selected if entries[info["pool_index"]]["kind"] == "test"]
    medians = {q: float(np.median([e[q] for e in errors.values()])) for q in ("energy", "force")}
    above = {q: sum(errors[k][q] > medians[q] for k in labelled) for q in ("energy", "force")}
    gaps = [abs(info["committee_energy"] - errors[entries[info["pool_index"]]["key"]]["E_pred"]) for info in selected
            if entries[info["pool_index"]]["kind"] == "test"]
    return {"n": len(selected), "perturbed": sum(k != "test" for k in kinds), "kinds": kinds, "labelled": len(labelled),
            "above": above, "medians": medians, "max_energy_gap": max(gaps, default=0.0)}


def main(argv=None) -> int:
    args = parse_args(argv)
    tarball = tio2_tarball(args.shared)
    if tarball is None:
        return 0
    run_dir = (args.run_dir or ROOT / "outputs" / "committee" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    wall = None
    if not args.reuse:
        wall = train(args, tarball, run_dir)
    run_id, metrics = final_metrics(run_dir, args.tracking_uri)
    errors = test_errors(run_dir)
    pool_file = run_dir / "pool.xyz"
    entries = build_pool(tarball, list(errors), args.strain, args.rattle, args.seed, pool_file)
    results = {by: analyse(select(run_dir, pool_file, args.n, by, run_dir / f"selected_{by}.xyz"), entries, errors)
               for by in CRITERIA}
    labelled_pool = pool_file.with_name("pool_labelled.xyz")  # the test structures alone: frame i is entries[i]
    results |= {f"{by}, labelled part only": analyse(select(run_dir, labelled_pool, args.n_labelled, by,
                                                            run_dir / f"selected_labelled_{by}.xyz"), entries, errors)
                for by in CRITERIA}

    print()
    print(machine_description())
    timing = f", {wall:.0f} s wall" if wall is not None else ""
    print(f"\nK = {args.members} committee, experiment=tio2_fast, {args.iterations} epochs{timing}, run {run_id[:8]} "
          f"({run_dir})\n")
    print(metrics_table(metrics))
    n_labelled = sum(e["kind"] == "test" for e in entries)
    print(f"\nPool {pool_file}: {len(entries)} structures — {n_labelled} test structures with DFT labels, "
          f"{len(entries) - n_labelled} unlabelled variants of them (strain ×{1 - args.strain:g}, ×{1 + args.strain:g}, "
          f"rattle {args.rattle:g} Å, seed {args.seed}); a random pick is {1 - n_labelled / len(entries):.2f} perturbed.")
    medians = results["energy"]["medians"]
    print(f"Medians over the labelled pool: |ΔE| {1000 * medians['energy']:.2f} meV/atom, largest per-atom |ΔF| "
          f"{medians['force']:.3f} eV/Å\n")
    print(f"Last two rows: select on the {n_labelled} labelled structures alone (pool_labelled.xyz), top {args.n_labelled}.\n")
    print("| selected by | top n | perturbed (fraction) | strain − / strain + / rattled | labelled selected | "
          "above median \\|ΔE\\|/atom | above median max \\|ΔF\\| |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for by, r in results.items():
        kinds = r["kinds"]
        counts = " / ".join(str(sum(k.startswith(prefix) for k in kinds))
                            for prefix in (f"strain {1 - args.strain:g}", f"strain {1 + args.strain:g}", "rattle"))
        lab = r["labelled"]
        frac = {q: (f"{r['above'][q]} ({r['above'][q] / lab:.2f})" if lab else "–") for q in ("energy", "force")}
        print(f"| {by} | {r['n']} | {r['perturbed']} ({r['perturbed'] / r['n']:.2f}) | {counts} | {lab} | "
              f"{frac['energy']} | {frac['force']} |")
    gap = max(r["max_energy_gap"] for r in results.values())
    print(f"\nselect's mean energy vs the run's test prediction, labelled selected structures: largest gap {gap:.2e} eV")
    return 0


if __name__ == "__main__":
    sys.exit(main())
