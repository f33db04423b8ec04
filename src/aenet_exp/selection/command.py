"""``python -m aenet_exp select run=<committee> pool=<structures> n=50 out=selected.xyz [by=energy|forces]``
(options: :class:`~aenet_exp.config.schema.SelectConfig`).

Ranks every pool structure by the committee's disagreement, writes the top ``n`` as extended XYZ (σ values in
each frame's ``info``), prints the top rows, and records the selection as an MLflow run. Pool structures the
committee cannot evaluate (species it never saw, overlapping atoms, unreadable database rows) are skipped with a
warning that counts them, and listed in ``<out stem>.skipped.tsv`` (parameter ``pool_skipped``, an artifact).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from aenet_exp.calculator import Calculator
from aenet_exp.config.schema import SelectConfig
from aenet_exp.data import read_structures
from aenet_exp.data.hdf5 import StructureDatabase
from aenet_exp.destinations import writable_file
from aenet_exp.errors import ConfigError, first_line, root_cause, warn
from aenet_exp.files import write_atomically
from aenet_exp.selection.ranking import (
    CRITERIA, Disagreement, Skipped, disagreement, selected_atoms, top, write_extxyz,
)
from aenet_exp.model.locate import load_potential
from aenet_exp.tracking.mlflow_run import MlflowRun
from aenet_exp.tracking.observer import TrackingUnavailable, check_store
from aenet_exp.tracking.plots import sigma_histogram_png

TOP_ROWS = 10  # printed


def select(options: SelectConfig) -> list[Path]:
    """Run ``select`` with its ``options``; returns the file written (ConfigError, DataError on bad input).

    ``out`` and the MLflow store are checked before the pool is evaluated. The selection is written to a private
    file first, recorded from there, then put in place: two selections into one ``out`` each record their own."""
    out = writable_file(options.out, "out")
    if options.tracking.enabled:
        check_store(options.tracking.uri, options.tracking.experiment)
    potential = load_potential(options.run, options.tracking.uri, key="run")
    if potential.members < 2:
        raise ConfigError("run", f"{options.run} is a single potential, which has no disagreement to rank by; "
                          "train a committee (committee=deep)")
    pool = open_pool(options.pool)
    spread = rank_pool(Calculator(potential), pool, options.batch_size)
    scores = spread.scores(options.by)
    chosen = top(scores, options.n)
    listed = skipped_list(out)
    with tempfile.TemporaryDirectory() as directory:  # recorded from here, then renamed into place
        selection, skipped_file = Path(directory) / out.name, Path(directory) / listed.name
        write_extxyz(selection, selected_atoms(pool, chosen, spread, options.by))
        if spread.skipped:
            write_atomically(skipped_file, skipped_text(spread.skipped))
            warn(f"skipped {len(spread.skipped)} of {len(pool)} pool structures the committee cannot evaluate "
                 f"(species it never saw, overlapping atoms, unreadable rows), listed in {listed}")
        print(top_table(pool, chosen, spread))
        print(f"selected {len(chosen)} of {len(pool) - len(spread.skipped)} structures by {CRITERIA[options.by]}")
        if options.tracking.enabled:
            record(options, selection, scores, chosen, len(pool), spread.skipped, skipped_file)
        write_atomically(out, selection.read_bytes())
        listed.unlink(missing_ok=True)  # an earlier selection's list does not describe this one
        if spread.skipped:
            write_atomically(listed, skipped_file.read_bytes())
    return [out, listed] if spread.skipped else [out]


def open_pool(location: str) -> Sequence:
    """The pool's structures: an HDF5 database read lazily, else every structure of the files."""
    if location.endswith(".h5"):
        if not Path(location).is_file():
            raise ConfigError("pool", f"no database {location}")
        return StructureDatabase(location)
    return read_structures(location)


def rank_pool(calculator: Calculator, pool: Sequence, batch_size: int) -> Disagreement:
    """The committee's disagreement on ``pool``, with a progress bar on a terminal."""
    with tqdm(total=len(pool), unit="structure", disable=not sys.stderr.isatty(), desc="select") as bar:
        return disagreement(calculator, pool, batch_size, bar.update)


def skipped_list(out: Path) -> Path:
    """Where the pool structures skipped by a selection written to ``out`` are listed: ``<out stem>.skipped.tsv``."""
    return out.with_name(f"{out.stem}.skipped.tsv")


def skipped_text(skipped: Sequence[Skipped]) -> str:
    """The skipped structures as tab-separated lines: pool index, file and frame, why."""
    return "pool_index\tstructure\twhy\n" + "".join(f"{s.index}\t{s.where}\t{s.why}\n" for s in skipped)


def top_table(pool: Sequence, chosen: np.ndarray, spread: Disagreement) -> str:
    """The first rows of the selection: rank, σ of the energy per atom (meV/atom), largest |σ_F| (eV/Å), source."""
    rows = [f"{'rank':>4}  {'σE (meV/atom)':>13}  {'max |σF| (eV/Å)':>15}  structure"]
    for rank, index in enumerate(chosen[:TOP_ROWS], start=1):
        s = pool[int(index)]
        rows.append(f"{rank:>4}  {1000 * spread.energy_std_per_atom[index]:>13.3f}  {spread.max_force_std[index]:>15.4f}  "
                    f"{s.source} frame {s.frame}")
    return "\n".join(rows)


def record(options: SelectConfig, selection: Path, scores: np.ndarray, chosen: np.ndarray, pool_size: int,
           skipped: Sequence[Skipped], listed: Path) -> None:
    """The selection as an MLflow run: its arguments, how many pool structures were ``skipped`` (with their list,
    the file ``listed``, when there are any), the σ histogram, the selected structures; a store failing meanwhile is
    one line (TrackingUnavailable), the run marked FAILED as far as the store still answers."""
    by, uri = options.by, options.tracking.uri
    params = {"run": options.run, "pool": options.pool, "n": len(chosen), "by": by, "pool_structures": pool_size,
              "pool_skipped": len(skipped)}
    try:
        run = MlflowRun.start(uri, options.tracking.experiment, f"select-{by}-{len(chosen)}", params,
                              {"aenet_exp.command": "select"})
        with run:
            threshold = float(scores[chosen[-1]]) if len(chosen) else float("nan")
            scores = scores[~np.isnan(scores)]  # skipped structures have none
            if len(scores):
                run.log_metrics({"selection/threshold": threshold, "selection/max": float(scores.max()),
                                 "selection/median": float(np.median(scores))}, step=0)
            with tempfile.TemporaryDirectory() as directory:
                histogram = Path(directory) / "sigma_histogram.png"
                sigma_histogram_png(histogram, scores, threshold, CRITERIA[by])
                run.log_artifact(histogram)
            run.log_artifact(selection)
            if skipped:
                run.log_artifact(listed)
            run.finish("FINISHED")
    except Exception as error:  # MLflow, SQLAlchemy and the OS raise many types
        raise TrackingUnavailable(f"tracking.uri: the MLflow store at {uri} failed while recording the selection "
                                  f"({first_line(root_cause(error))}); out= is not written") from None
    print(f"MLflow run {run.run_id}")
