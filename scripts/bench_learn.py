"""Label efficiency of ``python -m aenet_exp learn`` against random selection from the same explored frames.

For each case a campaign runs (``learn`` in a subprocess, ``tracking.enabled=false``) for its generations. Generation
g's committee trains on the seed data and N_g oracle labels, the labels chosen by the committee from the frames that
generations 0..g-1 explored. The random baseline gets, for each g ≥ 1, the same N_g labels drawn uniformly (seeded,
without replacement) from ALL frames those generations explored (accurate, candidate and failed alike: random
selection knows no σ), labelled with the same oracle, and trains with generation g's own training configuration
(``aenet_exp.build.learn.generation_config`` on the campaign's ``config.yaml``: same descriptor, networks, committee,
optimiser, iterations; warm-started from the baseline's previous generation when the campaign warm-starts, as the
campaign does; generation 0, trained on the seed alone, is shared). Both are evaluated on a held-out set from MD
hotter than the campaign explores, labelled with the oracle: RMSE of the energy per atom and of the force
components, with ``Calculator.load(run).predict(held_out)``.

Cases:
  cu_emt       the embedded default's seed (12 EMT frames of a 32-atom Cu cell), oracle=emt; held out: EMT Langevin
               MD of the equilibrium 32-atom cell at 1200 K.
  ethanol_xtb  6 rattled ethanol molecules (no cell) labelled with GFN2-xTB (tblite), oracle=xtb,
               normalization.energy_target=total; held out: GFN2-xTB Langevin MD of ethanol at 1000 K.

Everything lands in ``--work`` (default outputs/bench_learn/<case>/): the seed and held-out files, the campaign
folder, the baseline's labels and runs, and results.json; a rerun reuses what is there (delete the folder to start
over). Figures go to ``--figures`` (learn_<case>.png). Usage (from the repository root, with aenet_exp[oracles])::

    python scripts/bench_learn.py [--cases cu_emt ethanol_xtb] [--work outputs/bench_learn] [--figures docs/figures]
        [--baseline-seeds 0 1 2]

The goal (issue 22, item 5): the campaign reaches random selection's final force error with at most half its labels.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

from benchlib import machine_description

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class HeldOut:
    """Langevin MD with the oracle from ``start``: ``frames`` frames ``every`` steps apart after ``equilibrate``
    steps, at ``temperature`` K with a ``timestep`` fs, friction 0.02/fs."""

    start: Callable[[], Atoms]
    temperature: float
    timestep: float
    equilibrate: int
    every: int
    frames: int


@dataclass(frozen=True)
class Case:
    """A benchmark case: the oracle (a new ASE calculator per call), the seed data, the held-out MD, and the
    ``learn`` overrides of the campaign."""

    name: str
    title: str
    oracle: Callable[[], object]
    seed: Callable[[Path], Path | None]  # writes the seed file in the case folder (None: the data option's own)
    held_out: HeldOut
    overrides: tuple[str, ...]


# ---------------------------------------------------------------- oracles and data


def emt():
    from ase.calculators.emt import EMT

    return EMT()


def xtb():
    from tblite.ase import TBLite  # the optional oracles extra: only for this case

    return TBLite(method="GFN2-xTB", verbosity=0)


def labelled(atoms: Atoms, calculator) -> Atoms:
    """A copy of ``atoms`` with the oracle's energy (eV), forces (eV/Å) and, for periodic cells, stress."""
    copy = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.cell, pbc=atoms.pbc)
    copy.calc = calculator
    results = {"energy": copy.get_potential_energy(), "forces": copy.get_forces()}
    if copy.pbc.all():
        results["stress"] = copy.get_stress()
    copy.calc = SinglePointCalculator(copy, **results)
    return copy


def held_out_md(case: Case, seed: int = 2024) -> list[Atoms]:
    """The held-out frames: Langevin MD driven by the oracle itself, each recorded frame with its labels."""
    md = case.held_out
    atoms = md.start()
    atoms.calc = case.oracle()
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=md.temperature, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    dynamics = Langevin(atoms, md.timestep * units.fs, temperature_K=md.temperature, friction=0.02 / units.fs, rng=rng)
    dynamics.run(md.equilibrate)
    frames = []
    for _ in range(md.frames):
        dynamics.run(md.every)
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        frame = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.cell, pbc=atoms.pbc)
        frame.calc = SinglePointCalculator(frame, **results)
        frames.append(frame)
    return frames


def cu_cell() -> Atoms:
    return bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))


def ethanol() -> Atoms:
    return molecule("CH3CH2OH")


def ethanol_seed(folder: Path) -> Path:
    """6 ethanol molecules, every atom displaced by a seeded Gaussian of 0.02–0.12 Å, labelled with GFN2-xTB."""
    path = folder / "seed.xyz"
    if not path.is_file():
        calculator = xtb()
        frames = []
        for k, rattle in enumerate(np.linspace(0.02, 0.12, 6)):
            atoms = ethanol()
            atoms.rattle(rattle, seed=k)
            frames.append(labelled(atoms, calculator))
        write(path, frames, format="extxyz")
    return path


CASES = {
    "cu_emt": Case(
        "cu_emt", "Cu, EMT (32-atom cell; held out: EMT MD at 1200 K)", emt, lambda _folder: None,
        HeldOut(cu_cell, temperature=1200.0, timestep=2.0, equilibrate=500, every=25, frames=40),
        ("data=cu_emt", "oracle=emt", "explore.temperatures=[300,600,900]", "campaign.generations=6",
         "select.max_per_generation=8"),
    ),
    "ethanol_xtb": Case(
        "ethanol_xtb", "ethanol, GFN2-xTB (held out: xTB MD at 1000 K)", xtb, ethanol_seed,
        HeldOut(ethanol, temperature=1000.0, timestep=0.5, equilibrate=100, every=10, frames=30),
        ("oracle=xtb", "normalization.energy_target=total", "data.E_atomic=null", "data.name=ethanol-xtb-seed",
         "explore.temperatures=[150,300]", "explore.timestep=0.5", "explore.steps=200", "explore.every=10",
         "explore.trajectories=2", "select.trust_low=0.3", "select.trust_high=5", "campaign.generations=6",
         "select.max_per_generation=8"),
    ),
}


def cached(path: Path, make: Callable[[], list[Atoms]]) -> Path:
    """``path``, written with ``make()``'s structures first when it is not there."""
    if not path.is_file():
        frames = make()
        write(path.with_suffix(".tmp.xyz"), frames, format="extxyz")
        path.with_suffix(".tmp.xyz").replace(path)
    return path


# ---------------------------------------------------------------- the campaign


def run_campaign(case: Case, seed_path: Path | None, folder: Path) -> tuple[Path, float]:
    """The finished campaign's folder and the seconds it took (0 when it had finished before)."""
    directory = folder / "campaign"
    state = directory / "campaign.json"
    took = folder / "campaign_seconds.txt"
    if state.is_file() and json.loads(state.read_text())["finished"] and took.is_file():
        return directory, float(took.read_text())
    if directory.exists():
        shutil.rmtree(directory)
    seed = [f"data.path={seed_path}"] if seed_path is not None else []
    command = [sys.executable, "-m", "aenet_exp", "learn", *case.overrides, *seed, "tracking.enabled=false",
               f"hydra.run.dir={directory}"]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    took.write_text(f"{time.perf_counter() - start:.1f}\n")
    return directory, float(took.read_text())


def generations(campaign: Path) -> list[int]:
    return sorted(int(p.name) for p in (campaign / "generations").iterdir() if (p / "run" / "potential.pt").is_file())


def model_of(campaign: Path, generation: int) -> Path:
    return campaign / "generations" / f"{generation:03d}" / "run"


def labels_trained_on(campaign: Path, generation: int) -> int:
    """How many oracle labels generation ``generation`` trained on: those chosen by generations before it."""
    path = campaign / "labels.xyz"
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    return int(sum(a.info["generation"] < generation for a in read(path, index=":")))


def explored_before(campaign: Path, generation: int) -> list[Atoms]:
    """Every frame generations 0..generation-1 explored (all trust classes), in order."""
    frames = []
    for g in range(generation):
        path = campaign / "generations" / f"{g:03d}" / "explored.xyz"
        if path.stat().st_size:
            frames += read(path, index=":")
    return frames


# ---------------------------------------------------------------- the random baseline


def random_labels(pool: Sequence[Atoms], count: int, rng: np.random.Generator, oracle, cache: dict) -> list[Atoms]:
    """``count`` frames of ``pool`` drawn uniformly without replacement and labelled; a frame the oracle cannot label
    is replaced by the next draw. ``cache`` (key → labelled atoms) saves labelling a frame twice."""
    from aenet_exp.learning.labels import atoms_key

    chosen = []
    for index in rng.permutation(len(pool)):
        if len(chosen) == count:
            break
        key = atoms_key(pool[index])
        if key not in cache:
            try:
                cache[key] = labelled(pool[index], oracle)
            except Exception as error:  # an oracle's failure (SCF not converged, ...): draw another
                print(f"random baseline: label failed ({type(error).__name__}: {error}); drawing another")
                continue
        chosen.append(cache[key])
    return chosen


def train_generation(campaign_cfg, labels_path: Path | None, previous: Path | None, run_dir: Path) -> Path:
    """Train as the campaign trains a generation, on the seed data plus ``labels_path`` (None: none)."""
    from aenet_exp.build.learn import generation_config
    from aenet_exp.build.training import run_training

    if (run_dir / "potential.pt").is_file():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    run_training(generation_config(campaign_cfg, labels_path, previous, run_dir), run_dir)
    return run_dir


def random_baseline(campaign: Path, counts: dict[int, int], folder: Path, oracle, seed: int) -> dict[int, Path]:
    """The baseline's run folder per generation (generation 0: the campaign's own, trained on the seed alone)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(campaign / "config.yaml")
    runs = {0: model_of(campaign, 0)}
    cache: dict = {}
    for g in sorted(counts)[1:]:
        run_dir = folder / f"random-{seed}" / f"{g:03d}"
        labels_path = run_dir.parent / f"labels-{g:03d}.xyz" if counts[g] else None
        if labels_path is not None and not labels_path.is_file():
            pool = explored_before(campaign, g)
            chosen = random_labels(pool, counts[g], np.random.default_rng([seed, g]), oracle, cache)
            labels_path.parent.mkdir(parents=True, exist_ok=True)
            write(labels_path, chosen, format="extxyz")
        previous = runs[g - 1] / "potential.pt" if cfg.campaign.warm_start else None
        print(f"random baseline (seed {seed}): generation {g}, {counts[g]} labels", flush=True)
        runs[g] = train_generation(cfg, labels_path, previous, run_dir)
    return runs


# ---------------------------------------------------------------- evaluation and report


def held_out_errors(run_dir: Path, held_out: Sequence) -> dict[str, float]:
    """RMSE of the energy per atom (eV/atom) and of the force components (eV/Å) on the held-out structures, and the
    committee's RMS force σ over the same components (eV/Å)."""
    from aenet_exp.calculator import Calculator

    predictions = Calculator.load(run_dir).predict(held_out)
    energy, _ = predictions.energy_errors()
    force, force_sigma = predictions.force_errors()
    return {"energy_rmse": float(np.sqrt(np.mean(energy**2))), "force_rmse": float(np.sqrt(np.mean(force**2))),
            "force_sigma_rms": float(np.sqrt(np.mean(force_sigma**2))) if force_sigma is not None else float("nan")}


def campaign_rows(campaign: Path) -> dict[int, dict[str, float]]:
    """Per generation, what the campaign recorded about its exploration (fractions, frames)."""
    recorded = json.loads((campaign / "campaign.json").read_text())["generations"]
    keys = ("accurate_fraction", "candidate_fraction", "failed_fraction", "frames", "max_sigma")
    return {int(g): {k: m.get(f"campaign/{k}", float("nan")) for k in keys} for g, m in recorded.items()}


def labels_to_reach(campaign_curve: Sequence[tuple[int, float]], target: float) -> int | None:
    """The fewest labels (> 0) at which the campaign's force RMSE is at or below ``target`` (None: never)."""
    reached = [n for n, error in campaign_curve if n > 0 and error <= target]
    return min(reached) if reached else None


def table(rows: list[dict]) -> str:
    """The markdown table: per generation, labels, held-out errors of both, the campaign committee's RMS force σ on
    the held-out set, and what the campaign explored."""
    lines = ["| gen | labels | campaign F RMSE eV/Å | random F RMSE eV/Å (mean) | campaign σ_F RMS eV/Å | "
             "campaign E RMSE meV/atom | random E RMSE meV/atom (mean) | explored | accurate / candidate / failed % |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        fractions = " / ".join(f"{100 * r[k]:.0f}" for k in ("accurate_fraction", "candidate_fraction", "failed_fraction"))
        campaign, random = r["campaign"], r["random"]
        lines.append(f"| {r['generation']} | {r['labels']} | {campaign['force_rmse']:.4f} | {random['force_rmse']:.4f} | "
                     f"{campaign['force_sigma_rms']:.4f} | {1000 * campaign['energy_rmse']:.2f} | "
                     f"{1000 * random['energy_rmse']:.2f} | {r['frames']:.0f} | {fractions} |")
    return "\n".join(lines)


def plot(case: Case, rows: list[dict], random_seeds: Sequence[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["labels"] for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, scale, unit in ((axes[0], "force_rmse", 1.0, "force RMSE (eV/Å)"),
                                   (axes[1], "energy_rmse", 1000.0, "energy RMSE (meV/atom)")):
        axis.plot(labels, [scale * r["campaign"][key] for r in rows], "o-", label="campaign (committee σ)")
        for seed in random_seeds:
            axis.plot(labels, [scale * r["random_by_seed"][str(seed)][key] for r in rows], "s--", alpha=0.8,
                      label=f"random from the explored frames (seed {seed})")
        axis.set_xlabel("oracle labels (seed data not counted)")
        axis.set_ylabel(unit)
        axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Held-out error vs labels: {case.title}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def bench_case(case: Case, work: Path, figures: Path, random_seeds: Sequence[int]) -> dict:
    from aenet_exp.data import read_structures

    folder = work / case.name
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    seed_path = case.seed(folder)
    held_out_path = cached(folder / "held_out.xyz", lambda: held_out_md(case))
    held_out = read_structures(held_out_path)
    prepare_s = time.perf_counter() - start
    campaign, campaign_s = run_campaign(case, seed_path, folder)
    counts = {g: labels_trained_on(campaign, g) for g in generations(campaign)}
    start = time.perf_counter()
    baselines = {seed: random_baseline(campaign, counts, folder, case.oracle(), seed) for seed in random_seeds}
    baseline_s = time.perf_counter() - start
    explored = campaign_rows(campaign)
    rows = []
    for g, count in counts.items():
        by_seed = {str(seed): held_out_errors(runs[g], held_out) for seed, runs in baselines.items()}
        mean = {k: float(np.mean([e[k] for e in by_seed.values()])) for k in ("energy_rmse", "force_rmse")}
        rows.append({"generation": g, "labels": count, "campaign": held_out_errors(model_of(campaign, g), held_out),
                     "random": mean, "random_by_seed": by_seed, **explored.get(g, {})})
    final_random = rows[-1]["random"]["force_rmse"]
    reached = labels_to_reach([(r["labels"], r["campaign"]["force_rmse"]) for r in rows], final_random)
    plot(case, rows, random_seeds, figures / f"learn_{case.name}.png")
    result = {"case": case.name, "title": case.title, "overrides": list(case.overrides), "rows": rows,
              "random_final_force_rmse": final_random, "campaign_labels_to_reach_it": reached,
              "labels_final": rows[-1]["labels"], "held_out_frames": len(held_out),
              "seconds": {"seed_and_held_out": prepare_s, "campaign": campaign_s, "random_baseline": baseline_s}}
    (folder / "results.json").write_text(json.dumps(result, indent=1))
    return result


def report(result: dict) -> str:
    reached, final = result["campaign_labels_to_reach_it"], result["labels_final"]
    verdict = (f"the campaign reaches random selection's final force RMSE ({result['random_final_force_rmse']:.4f} "
               f"eV/Å at {final} labels) with {reached} labels ({reached / final:.0%} of them; goal ≤ 50 %)"
               if reached is not None else
               f"the campaign does not reach random selection's final force RMSE "
               f"({result['random_final_force_rmse']:.4f} eV/Å at {final} labels)")
    if result["rows"][0]["campaign"]["force_rmse"] <= min(r["campaign"]["force_rmse"] for r in result["rows"]):
        verdict += "; no generation with labels beats generation 0, trained on the seed alone"
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items())
    return (f"\n### {result['title']}\n\nlearn overrides: {' '.join(result['overrides'])}\n"
            f"held-out frames: {result['held_out_frames']}; time: {seconds}\n\n{table(result['rows'])}\n\n{verdict}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench_learn")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--baseline-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds of the random baseline's draws (each a full set of trainings)")
    args = parser.parse_args(argv)
    print(machine_description(), flush=True)
    for name in args.cases:
        print(report(bench_case(CASES[name], args.work, args.figures, args.baseline_seeds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
