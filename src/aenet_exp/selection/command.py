"""``python -m aenet_exp select run=<committee> pool=<structures> n=50 out=selected.xyz [by=energy|forces]``.

Ranks every pool structure by the committee's disagreement, writes the top ``n`` as extended XYZ (σ values in
each frame's ``info``), prints the top rows, and records the selection as an MLflow run.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from aenet_exp.arguments import ArgumentError, parse_key_values, positive_int, usage
from aenet_exp.calculator import Calculator
from aenet_exp.data import read_structures
from aenet_exp.data.hdf5 import StructureDatabase
from aenet_exp.selection.ranking import CRITERIA, Disagreement, disagreement, selected_atoms, top, write_extxyz
from aenet_exp.model.locate import load_potential
from aenet_exp.tracking.mlflow_run import MlflowRun
from aenet_exp.tracking.plots import sigma_histogram_png

KEYS = {
    "run": "the committee: a run directory, a model file or runs:/<run_id>[/path]",
    "pool": "the candidate structures: files, a directory, a glob, a tar archive or an HDF5 database (.h5)",
    "n": "how many structures to select (default 50)",
    "out": "the extended XYZ file written (default selected.xyz)",
    "by": "energy (σ of the energy per atom, default) | forces (largest per-atom |σ_F|)",
    "batch_size": "structures evaluated at a time (default 64)",
    "tracking": "record the selection as an MLflow run: true (default) | false",
    "tracking_uri": "the MLflow store (default sqlite:///outputs/mlflow.db, as train's)",
    "experiment": "the MLflow experiment (default aenet_exp)",
}
USAGE = usage("select run=<...> pool=<...> [n=50] [out=selected.xyz] [by=energy|forces]", KEYS)
TOP_ROWS = 10  # printed


def select(args: Sequence[str]) -> list[Path]:
    """Run ``select`` with command-line ``args``; returns the file written (ArgumentError, DataError on bad input)."""
    options = parse_key_values(args, KEYS, {"run": "outputs/runs/<time>", "pool": "'candidates/*.xyz'"})
    by = options.get("by", "energy")
    if by not in CRITERIA:
        raise ArgumentError(f"by: expected one of {list(CRITERIA)}, got {by!r}")
    n, batch_size = positive_int(options, "n", 50), positive_int(options, "batch_size", 64)
    tracked = options.get("tracking", "true")
    if tracked not in ("true", "false"):
        raise ArgumentError(f"tracking: expected true or false, got {tracked!r}")
    uri = options.get("tracking_uri", "sqlite:///outputs/mlflow.db")
    potential = load_potential(options["run"], uri, key="run")
    if potential.members < 2:
        raise ArgumentError(f"run: {options['run']} is a single potential, which has no disagreement to rank by; "
                            "train a committee (committee=deep)")
    pool = open_pool(options["pool"])
    spread = rank_pool(Calculator(potential), pool, batch_size)
    scores = spread.scores(by)
    chosen = top(scores, n)
    out = Path(options.get("out", "selected.xyz"))
    write_extxyz(out, selected_atoms(pool, chosen, spread, by))
    print(top_table(pool, chosen, spread))
    print(f"selected {len(chosen)} of {len(pool)} structures by {CRITERIA[by]}")
    if tracked == "true":
        record(options, uri, out, scores, chosen, by, len(pool))
    return [out]


def open_pool(location: str) -> Sequence:
    """The pool's structures: an HDF5 database read lazily, else every structure of the files."""
    if location.endswith(".h5"):
        if not Path(location).is_file():
            raise ArgumentError(f"pool: no database {location}")
        return StructureDatabase(location)
    return read_structures(location)


def rank_pool(calculator: Calculator, pool: Sequence, batch_size: int) -> Disagreement:
    """The committee's disagreement on ``pool``, with a progress bar on a terminal."""
    with tqdm(total=len(pool), unit="structure", disable=not sys.stderr.isatty(), desc="select") as bar:
        return disagreement(calculator, pool, batch_size, bar.update)


def top_table(pool: Sequence, chosen: np.ndarray, spread: Disagreement) -> str:
    """The first rows of the selection: rank, σ of the energy per atom (meV/atom), largest |σ_F| (eV/Å), source."""
    rows = [f"{'rank':>4}  {'σE (meV/atom)':>13}  {'max |σF| (eV/Å)':>15}  structure"]
    for rank, index in enumerate(chosen[:TOP_ROWS], start=1):
        s = pool[int(index)]
        rows.append(f"{rank:>4}  {1000 * spread.energy_std_per_atom[index]:>13.3f}  {spread.max_force_std[index]:>15.4f}  "
                    f"{s.source} frame {s.frame}")
    return "\n".join(rows)


def record(options: dict[str, str], uri: str, out: Path, scores: np.ndarray, chosen: np.ndarray, by: str,
           pool_size: int) -> None:
    """The selection as an MLflow run: its arguments, the σ histogram, the selected structures."""
    params = {"run": options["run"], "pool": options["pool"], "n": len(chosen), "by": by, "pool_structures": pool_size}
    run = MlflowRun.start(uri, options.get("experiment", "aenet_exp"), f"select-{by}-{len(chosen)}", params,
                          {"aenet_exp.command": "select"})
    with run:
        threshold = float(scores[chosen[-1]]) if len(chosen) else float("nan")
        if len(scores):
            run.log_metrics({"selection/threshold": threshold, "selection/max": float(scores.max()),
                             "selection/median": float(np.median(scores))}, step=0)
        with tempfile.TemporaryDirectory() as directory:
            histogram = Path(directory) / "sigma_histogram.png"
            sigma_histogram_png(histogram, scores, threshold, CRITERIA[by])
            run.log_artifact(histogram)
        run.log_artifact(out)
        run.finish("FINISHED")
    print(f"MLflow run {run.run_id}")

