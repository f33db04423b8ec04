"""NVE molecular dynamics of ethanol with a trained potential; reports the total-energy drift.

    python scripts/md_ethanol.py [--model RUN_DIR_OR_FILE] [--steps 2000] [--dt 0.5]

Without --model a small potential is trained first on ../shared/data/ethanol/train.xyz (skipped
cleanly when the shared folder is absent).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from ase import units
from ase.io import read
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from aenet_exp.calculator import Calculator

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ethanol"


def train_quick_model(output: Path) -> Path:
    """A small force-trained ethanol potential (a few minutes on 2 cores)."""
    from hydra import compose, initialize_config_module

    import aenet_exp.config  # noqa: F401
    from aenet_exp.build.training import run_training

    overrides = [
        "data=ethanol", f"data.path={SHARED / 'train.xyz'}", f"normalization.E_atomic={SHARED / 'isolated_atoms.xyz'}",
        "force=full", "force.weight=0.5", "optimizer.mu=3e-3", "optimizer.batchsize=16", "iterations=15",
        "caching=force", "precision=float32", "tracking.enabled=false", "descriptor.rad_cutoff=4.5",
        "descriptor.ang_cutoff=3.5",
    ]
    with initialize_config_module("aenet_exp.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    metrics = run_training(cfg, output)
    print("trained:", {k: round(v, 4) for k, v in metrics.items() if k.startswith("final/")})
    return output


def energy_drift(model: Path, steps: int, dt_fs: float, temperature: float, seed: int) -> dict[str, float]:
    """Run NVE from the first test-set structure; drift of the total energy per atom."""
    atoms = read(SHARED / "test_MD.xyz", index=0)
    atoms.calc = Calculator.load(model)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    ZeroRotation(atoms)
    dyn = VelocityVerlet(atoms, dt_fs * units.fs)
    totals = []
    dyn.attach(lambda: totals.append(atoms.get_total_energy()), interval=10)
    dyn.run(steps)
    totals = np.array(totals) / len(atoms)
    time_ps = np.arange(len(totals)) * 10 * dt_fs / 1000
    slope = np.polyfit(time_ps, totals, 1)[0]
    return {
        "steps": steps,
        "dt_fs": dt_fs,
        "drift_meV_per_atom_per_ps": 1000 * slope,
        "max_abs_deviation_meV_per_atom": 1000 * np.abs(totals - totals[0]).max(),
        "rms_fluctuation_meV_per_atom": 1000 * totals.std(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="run directory, model file or runs:/ URI (default: train one)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--dt", type=float, default=0.5, help="time step, fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="initial temperature, K")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"Skipping: the shared ethanol data ({SHARED}) is absent")
        return
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(args.model) if args.model else train_quick_model(Path(scratch) / "run")
        result = energy_drift(model, args.steps, args.dt, args.temperature, args.seed)
    print("| quantity | value |\n|---|---:|")
    for key, value in result.items():
        print(f"| {key} | {value:.4g} |")


if __name__ == "__main__":
    sys.exit(main())
