"""Seconds per epoch and peak memory of training configurations, side by side, on the TiO2 data set.

Trains on ``shared/data/tio2-1000/dir_xsf.tar.gz`` with the published aenet-PyTorch setup
(descriptor ``published``, 2×5 tanh networks, AdamW lr 1e-4, weight decay 1e-3, batch 128,
10 % test) and compares, one row each:

 1. energy only, uncached                      7. row 4 + ``caching.triplets``
 2. energy only, ``caching.features``          8. row 4 + ``caching.features_for_force``
 3. forces α = 0.1, fraction 1.0               9. row 4 + ``dataloader.num_workers=2``
 4. forces α = 0.1, fraction 0.3              10. row 4 in float64 (the others: float32)
 5. forces α = 0.1, fraction 0.1              11. row 4 reading an HDF5 database (built first,
 6. row 4 + ``caching.neighbors``                 its build throughput reported apart)
12. row 3 + ``caching.triplets`` (forces by autograd through the descriptor, graphs kept)
13. row 3 + ``caching.derivatives`` (forces through the cached feature Jacobian)
14. the published force setup: α = 0.1, a fixed 25 % of structures with forces, ``caching=force``
    + ``caching.derivatives``

Each row trains in a fresh subprocess of this script (``--one``), so the peak RSS
(``ru_maxrss`` of that process; DataLoader workers not included) belongs to that configuration
alone. s/epoch is the median over the epochs after the first; the first epoch, where caches
fill, is reported on its own. Phase shares are the ``time/*_s`` metrics of the epochs after the
first as a percentage of their epoch time ("other": untimed work such as losses and metrics).

Usage::

    python scripts/bench_training.py [--shared PATH] [--epochs 3] [--limit N] [--rows 1,2,3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from benchlib import DEFAULT_SHARED, bench_main, machine_description, run_child

PUBLISHED = (
    "descriptor=published",
    "model.hidden=[5,5]",
    "model.activations=[tanh,tanh]",
    "optimizer=adamw",
    "optimizer.mu=1e-4",
    "optimizer.weight_decay=1e-3",
    "optimizer.batchsize=128",
    "data.testpercent=10",
    "normalization.E_atomic={O: -432.503149303, Ti: -1604.604515075}",
    "tracking.enabled=false",
    "tracking.show_progress=false",
    "tracking.timing=true",
)
EPOCH_KEY = "time/epoch_s"


class Row(NamedTuple):
    """One configuration: its label, its overrides, and whether it reads the HDF5 database."""

    label: str
    overrides: tuple[str, ...]
    database: bool = False


ENERGY = ("force=off", "caching=none")
PUBLISHED_FORCES = ("force=subsampled", "force.fraction=0.25", "force.sampling=fixed", "caching=force", "caching.derivatives=true")
FORCE_03 = ("force=subsampled", "caching=none")
F32 = ("precision=float32",)
ROWS = (
    Row("energy only, uncached", ENERGY + F32),
    Row("energy only, caching.features", ENERGY + ("caching.features=true",) + F32),
    Row("forces α=0.1, fraction 1.0", ("force=full", "force.weight=0.1", "caching=none") + F32),
    Row("forces α=0.1, fraction 0.3", FORCE_03 + F32),
    Row("forces α=0.1, fraction 0.1", FORCE_03 + ("force.fraction=0.1",) + F32),
    Row("row 4 + caching.neighbors", FORCE_03 + ("caching.neighbors=true",) + F32),
    Row("row 4 + caching.triplets", FORCE_03 + ("caching.triplets=true",) + F32),
    Row("row 4 + caching.features_for_force", FORCE_03 + ("caching.features_for_force=true",) + F32),
    Row("row 4 + dataloader.num_workers=2", FORCE_03 + ("dataloader.num_workers=2",) + F32),
    Row("row 4, float64", FORCE_03 + ("precision=float64",)),
    Row("row 4, HDF5 database", FORCE_03 + F32, database=True),
    Row("row 3 + caching.triplets", ("force=full", "caching=none", "caching.triplets=true") + F32),
    Row("row 3 + caching.derivatives", ("force=full", "caching=none", "caching.derivatives=true") + F32),
    Row("published forces (25 % fixed), caching=force + derivatives", PUBLISHED_FORCES + F32),
)


class Result(NamedTuple):
    """What one row's subprocess reported, or why it failed."""

    row: int
    report: dict | None  # the child's JSON: epochs, final, facts, peak_rss_mb
    error: str | None  # stderr of a failed child


def row_numbers(text: str) -> list[int]:
    """``--rows 1,4,10`` as row numbers, each checked against the table of rows."""
    numbers = [int(part) for part in text.split(",") if part.strip()]
    bad = [n for n in numbers if not 1 <= n <= len(ROWS)]
    if bad or not numbers:
        raise argparse.ArgumentTypeError(f"expected row numbers from 1 to {len(ROWS)}, got {text!r}")
    return numbers


def at_least_two(text: str) -> int:
    """``--epochs``: s/epoch is a median over the epochs after the first, so at least two."""
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 epochs, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared folder (default: %(default)s)")
    parser.add_argument("--epochs", type=at_least_two, default=3, help="training epochs per row (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N structures (by file name)")
    parser.add_argument("--rows", type=row_numbers, default=list(range(1, len(ROWS) + 1)), help="rows to run, e.g. 1,4,10")
    parser.add_argument("--one", metavar="JSON", help=argparse.SUPPRESS)  # internal: train one row, print JSON
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the driver


def first_structures(tarball: Path, limit: int, folder: Path) -> Path:
    """Extract the first ``limit`` XSF files of ``tarball`` (by member name, the reader's order) into ``folder``."""
    with tarfile.open(tarball) as archive:
        members = sorted((m for m in archive.getmembers() if m.isfile() and m.name.endswith(".xsf")), key=lambda m: m.name)
        chosen = members[:limit]
        archive.extractall(folder, members=chosen, filter="data")
    return folder / Path(chosen[0].name).parent


def build_database_timed(source: Path, database: Path) -> tuple[int, float]:
    """Build the HDF5 database of ``source`` (default compression); structures written and seconds taken."""
    from aenet_exp.data.hdf5 import build_database

    start = time.perf_counter()
    count = build_database(str(source), database)
    return count, time.perf_counter() - start


def row_overrides(row: Row, data_path: Path, database: Path, epochs: int) -> list[str]:
    """Every override of one row: the published setup, the data, the epochs and the row's own."""
    extra = [f"data.database='{database}'"] if row.database else []
    return [*PUBLISHED, f"data.path='{data_path}'", f"iterations={epochs}", *row.overrides, *extra]


def run_row(number: int, overrides: list[str]) -> Result:
    """Run one row in a fresh interpreter (``--one``); its JSON report, or its stderr when it fails."""
    return Result(number, *run_child(__file__, ["--one", json.dumps(overrides)]))


def summarize(report: dict) -> dict[str, float]:
    """First-epoch and median later-epoch seconds, phase shares (%) of the later epochs, RSS and RMSEs."""
    first, later = report["epochs"][0], report["epochs"][1:]
    total = sum(e[EPOCH_KEY] for e in later)
    phases = [k for k in first if k.startswith("time/") and k != EPOCH_KEY]
    shares = {k: 100 * sum(e[k] for e in later) / total for k in phases}
    final = report["final"]
    return {
        "first": first[EPOCH_KEY],
        "median": statistics.median(e[EPOCH_KEY] for e in later),
        **shares,
        "other": 100 - sum(shares.values()),
        "rss": report["peak_rss_mb"],
        "train": 1000 * final["final/train/energy_rmse"],
        "test": 1000 * final["final/test/energy_rmse"] if "final/test/energy_rmse" in final else float("nan"),
    }


def phase_columns(keys: Iterable[str]) -> list[str]:
    """The ``time/*_s`` keys among ``keys``: training phases in their order, then the rest (evaluation)."""
    from aenet_exp.training.timing import PHASES

    found = {k for k in keys if k.startswith("time/")}
    ordered = [f"time/{p}_s" for p in PHASES if f"time/{p}_s" in found]
    return ordered + sorted(found - set(ordered))


def phase_name(key: str) -> str:
    """``time/featurize_s`` -> ``featurize``."""
    return key.removeprefix("time/").removesuffix("_s")


def table(results: list[Result]) -> str:
    """Markdown table, one line per row; failed rows say so (their tracebacks follow the table)."""
    summaries = {r.row: summarize(r.report) for r in results if r.report}
    phases = phase_columns(k for s in summaries.values() for k in s)
    header = ["#", "configuration", "s/epoch", "first epoch s", *(f"{phase_name(k)} %" for k in phases), "other %",
              "peak RSS MB", "train E RMSE meV/atom", "test E RMSE meV/atom"]
    lines = ["| " + " | ".join(header) + " |", "|---:|---|" + "---:|" * (len(header) - 2)]
    for result in results:
        label = ROWS[result.row - 1].label
        s = summaries.get(result.row)
        if s is None:
            cells = ["failed (traceback below)"] + [""] * (len(header) - 3)
        else:
            cells = [f"{s['median']:.3f}", f"{s['first']:.3f}", *(f"{s.get(k, 0.0):.1f}" for k in phases),
                     f"{s['other']:.1f}", f"{s['rss']:.0f}", f"{s['train']:.2f}", f"{s['test']:.2f}"]
        lines.append("| " + " | ".join([str(result.row), label, *cells]) + " |")
    return "\n".join(lines)


def data_description(results: list[Result], epochs: int) -> str:
    """Structures and atoms of the split, from the first row that ran."""
    facts = next((r.report["facts"] for r in results if r.report), None)
    if facts is None:
        return f"Epochs: {epochs}"
    return (
        f"Data: {facts['dataset.structures']} structures ({facts['dataset.train_structures']} train / "
        f"{facts['dataset.test_structures']} test), {facts['dataset.atoms']} atoms; {epochs} epochs per row, "
        f"s/epoch = median of the {epochs - 1} after the first"
    )


def benchmark(args: argparse.Namespace, tarball: Path) -> int:
    """Run the selected rows, each in a subprocess, and print the machine, the table and any failures."""
    print(machine_description(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_path = first_structures(tarball, args.limit, Path(tmp)) if args.limit else tarball
        database = Path(tmp) / "tio2.h5"
        if any(ROWS[n - 1].database for n in args.rows):
            count, seconds = build_database_timed(data_path, database)
            print(f"HDF5 database: {count} structures built in {seconds:.2f} s = {count / seconds:,.1f} structures/s",
                  flush=True)
        results = []
        for number in args.rows:
            print(f"row {number}: {ROWS[number - 1].label} ...", file=sys.stderr, flush=True)
            results.append(run_row(number, row_overrides(ROWS[number - 1], data_path, database, args.epochs)))
    print(data_description(results, args.epochs))
    print(f"Common overrides: {' '.join(PUBLISHED)}")
    print()
    print(table(results))
    for result in results:
        if result.error:
            print(f"\nRow {result.row} ({ROWS[result.row - 1].label}) failed:\n{result.error}")
    return 1 if any(r.error for r in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(parse_args(argv), benchmark)


if __name__ == "__main__":
    sys.exit(main())
