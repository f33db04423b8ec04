"""HDF5 structure databases at scale: build throughput, file size, and one epoch's time and peak memory.

Databases of N structures (``--sizes``, default 10,000 and 100,000) are made of rattled copies of
the 1000 TiO2 structures of ``shared/data/tio2-1000/dir_xsf.tar.gz``: copy k of structure s has the
positions of s plus Gaussian noise (σ = 0.02 Å, from a generator seeded with k) and the energy and
forces of s unchanged, so labels and geometry no longer agree. This is a benchmark of I/O and
memory, not of accuracy. The copies are made one at a time and streamed into
:func:`aenet_exp.data.hdf5.write_database`; they are never all in memory.

Rows, one epoch each with the same cheap settings (``COMMON``: energy only, no caching, float32,
a small descriptor, batch 256, default LRU cache ``data.in_memory_cache_size``):

 1. TiO2-1000 in memory (``data.path``, the tarball)
 2. TiO2-1000 read lazily from its HDF5 database (built from the tarball by ``build_database``)
 3. … one row per N: the rattled database of N structures, read lazily

Every database build and every training runs in a fresh subprocess of this script (``--build``,
``--one``), so each peak RSS (``ru_maxrss``) belongs to that build or training alone. Columns:

- build s, structures/s, file MiB, build RSS: row 2 reads and parses the XSF files; the rattled
  rows generate the copies (reading the 1000 originals from the row-2 database is not timed).
- run s: the wall time of ``run_training``: opening or reading the data, the feature-statistics
  pass, the epoch, the final energy predictions for every structure (no force pass: energy only), saving.
- s/epoch: the ``time/epoch_s`` metric (training pass plus test-set evaluation); train
  structures/s: training structures per s/epoch.
- RSS at epoch end: the child's peak up to the end of the epoch (statistics pass and epoch
  included); peak RSS: the child's peak over the whole run, final predictions included.

The lazy reader holds a batch plus the LRU cache, so the RSS at epoch end of the database rows
should not grow with N; what does grow is O(N) bookkeeping (per-structure columns, split indices,
final predictions).

Usage::

    python scripts/bench_hdf5.py [--sizes 10000,100000] [--workdir DIR] [--keep] [--shared PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from aenet_exp.data import Structure
from aenet_exp.data.hdf5 import StructureDatabase, build_database, write_database

from benchlib import DEFAULT_SHARED, machine_description, peak_rss_mb, run_child, tio2_tarball, train_one

SIGMA = 0.02  # Å, standard deviation of the rattling noise per coordinate
COMMON = (
    "descriptor.rad_order=4",
    "descriptor.rad_cutoff=3.0",
    "descriptor.ang_order=2",
    "descriptor.ang_cutoff=2.5",
    "optimizer.batchsize=256",
    "force=off",
    "caching=none",
    "precision=float32",
    "iterations=1",
    "normalization.E_atomic={O: -432.503149303, Ti: -1604.604515075}",
    "tracking.enabled=false",
    "tracking.show_progress=false",
)


class Case(NamedTuple):
    """One row: its label, its rattled size (None: the TiO2-1000 set itself), whether it reads a database."""

    label: str
    size: int | None
    database: bool


class Measured(NamedTuple):
    """A child's JSON report, or why it failed."""

    report: dict | None
    error: str | None


def structure_counts(text: str) -> list[int]:
    """``--sizes 10000,100000`` as positive structure counts."""
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        numbers = []
    if not numbers or any(n < 1 for n in numbers):
        raise argparse.ArgumentTypeError(f"expected positive structure counts separated by commas, got {text!r}")
    return numbers


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=structure_counts, default=[10_000, 100_000],
                        help="rattled database sizes (default: 10000,100000)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the scratch folder of databases goes (default: the system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and its databases")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared folder (default: %(default)s)")
    parser.add_argument("--one", metavar="JSON", help=argparse.SUPPRESS)  # internal: train one row, print JSON
    parser.add_argument("--build", metavar="JSON", help=argparse.SUPPRESS)  # internal: build one database, print JSON
    return parser.parse_args(argv)


def cases(sizes: Sequence[int]) -> list[Case]:
    """The rows: TiO2-1000 in memory and from its database, then each rattled size."""
    return [
        Case("TiO2-1000, in memory", None, False),
        Case("TiO2-1000, HDF5", None, True),
        *(Case(f"rattled {n:,}, HDF5", n, True) for n in sizes),
    ]


# ---------------------------------------------------------------- in a child process


def rattled(base: Sequence[Structure], n: int, sigma: float = SIGMA) -> Iterator[Structure]:
    """The first ``n`` rattled copies, one at a time: copy k of every structure of ``base`` in order, then copy k + 1.

    Copy k of a structure has its positions plus N(0, σ²) noise per coordinate (Å) drawn from
    ``numpy.random.default_rng(k)``, its energy and forces unchanged, and ``frame = k``.
    """
    for k in range(math.ceil(n / len(base))):
        rng = np.random.default_rng(k)
        for s in base[: n - k * len(base)]:
            yield dataclasses.replace(s, positions=s.positions + rng.normal(0.0, sigma, s.positions.shape), frame=k)


def build_one(spec: dict) -> dict:
    """Build one database: from ``source`` files, or of ``size`` rattled copies of the database ``base``.

    Returns the structures written, seconds taken, file size (bytes) and this process's peak RSS (MiB).
    """
    out = Path(spec["out"])
    if spec.get("size") is None:
        start = time.perf_counter()
        count = build_database(spec["source"], out)
    else:
        with StructureDatabase(spec["base"], cache_size=0) as db:
            base = db[:]
        start = time.perf_counter()
        count = write_database(rattled(base, spec["size"]), out)
    seconds = time.perf_counter() - start
    return {"count": count, "seconds": seconds, "bytes": out.stat().st_size, "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------- the driver


def database_path(scratch: Path, size: int | None) -> Path:
    """The database of the TiO2-1000 set (``size`` None) or of ``size`` rattled copies."""
    return scratch / ("tio2.h5" if size is None else f"rattled-{size}.h5")


def build_all(scratch: Path, tarball: Path, sizes: Sequence[int]) -> dict[int | None, Measured]:
    """Build the TiO2-1000 database, then each rattled one from it, each in a subprocess; keyed by size."""
    tio2 = database_path(scratch, None)
    builds = {None: build_child({"out": str(tio2), "source": str(tarball)})}
    for n in sizes:
        if builds[None].error:
            builds[n] = Measured(None, "not built: the TiO2-1000 database it copies failed")
        else:
            builds[n] = build_child({"out": str(database_path(scratch, n)), "base": str(tio2), "size": n})
    return builds


def build_child(spec: dict) -> Measured:
    """Build one database (``--build``) in a subprocess."""
    print(f"building {spec['out']} ...", file=sys.stderr, flush=True)
    return Measured(*run_child(__file__, ["--build", json.dumps(spec)]))


def train_child(case: Case, scratch: Path, tarball: Path, builds: dict[int | None, Measured]) -> Measured:
    """Train one row in a subprocess, unless its database failed to build."""
    if case.database and builds[case.size].error:
        return Measured(None, "not trained: its database failed to build")
    overrides = [*COMMON, f"data.path='{tarball}'"]
    if case.database:
        overrides.append(f"data.database='{database_path(scratch, case.size)}'")
    print(f"training {case.label} ...", file=sys.stderr, flush=True)
    return Measured(*run_child(__file__, ["--one", json.dumps(overrides)]))


def build_cells(build: Measured | None) -> list[str]:
    """build s, structures/s, file MiB, build RSS MiB; blank without a database, 'failed' when it failed."""
    if build is None:
        return ["–"] * 4
    if build.report is None:
        return ["failed"] + [""] * 3
    b = build.report
    rate, size = b["count"] / b["seconds"], b["bytes"] / 2**20
    return [f"{b['seconds']:.1f}", f"{rate:,.0f}", f"{size:.1f}", f"{b['peak_rss_mb']:.0f}"]


def train_cells(train: Measured) -> list[str]:
    """structures (train/test), atoms, run s, s/epoch, structures/s, RSS at epoch end and peak (MiB), train RMSE."""
    if train.report is None:
        return ["failed"] + [""] * 7
    r = train.report
    facts, epoch_s = r["facts"], r["epochs"][0]["time/epoch_s"]
    return [
        f"{facts['dataset.structures']:,} ({facts['dataset.train_structures']:,}/{facts['dataset.test_structures']:,})",
        f"{facts['dataset.atoms']:,}",
        f"{r['wall_s']:.1f}",
        f"{epoch_s:.2f}",
        f"{facts['dataset.train_structures'] / epoch_s:,.0f}",
        f"{r['epoch_peak_rss_mb'][0]:.0f}",
        f"{r['peak_rss_mb']:.0f}",
        f"{1000 * r['final']['final/train/energy_rmse']:.2f}",
    ]


HEADER = ["#", "data", "structures (train/test)", "atoms", "run s", "s/epoch", "train structures/s",
          "RSS at epoch end MiB", "peak RSS MiB", "train E RMSE meV/atom",
          "build s", "build structures/s", "file MiB", "build peak RSS MiB"]


def table(rows: list[Case], trains: list[Measured], builds: dict[int | None, Measured]) -> str:
    """Markdown table, one line per row; failures say so (their messages follow the table)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|---:|---|" + "---:|" * (len(HEADER) - 2)]
    for number, (case, train) in enumerate(zip(rows, trains), start=1):
        build = builds[case.size] if case.database else None
        cells = [str(number), case.label, *train_cells(train), *build_cells(build)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def failures(rows: list[Case], trains: list[Measured], builds: dict[int | None, Measured]) -> list[str]:
    """One message per failed build and failed training."""
    found = [f"Build of the {'TiO2-1000' if n is None else f'rattled {n:,}'} database failed:\n{m.error}"
             for n, m in builds.items() if m.error]
    rows_and_trains = enumerate(zip(rows, trains), start=1)
    found += [f"Row {i} ({case.label}) failed:\n{m.error}" for i, (case, m) in rows_and_trains if m.error]
    return found


def benchmark(args: argparse.Namespace, tarball: Path) -> int:
    """Build the databases, train every row, each in a subprocess; print the machine, the table and any failures."""
    print(machine_description(), flush=True)
    started = time.perf_counter()
    rows = cases(args.sizes)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench_hdf5-", dir=args.workdir))
    try:
        builds = build_all(scratch, tarball, args.sizes)
        trains = [train_child(case, scratch, tarball, builds) for case in rows]
    finally:
        if args.keep:
            print(f"Databases kept in {scratch}", flush=True)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"Rattled copies: positions + N(0, ({SIGMA} Å)²), energies and forces as in the originals; "
          f"gzip level 4 (the data.compression default); one epoch per row")
    print(f"Common overrides: {' '.join(COMMON)}")
    print()
    print(table(rows, trains, builds))
    problems = failures(rows, trains, builds)
    for problem in problems:
        print(f"\n{problem}")
    print(f"\nTotal time {time.perf_counter() - started:.0f} s")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        print(json.dumps(train_one(json.loads(args.one))))
        return 0
    if args.build is not None:
        print(json.dumps(build_one(json.loads(args.build))))
        return 0
    tarball = tio2_tarball(args.shared)
    return benchmark(args, tarball) if tarball is not None else 0


if __name__ == "__main__":
    sys.exit(main())
