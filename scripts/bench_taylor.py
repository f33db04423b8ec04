"""Taylor children (``augment=taylor``) against energy-only and force training, on the TiO2 data set.

Trains on ``shared/data/tio2-1000/dir_xsf.tar.gz`` with the setup of ``experiment=tio2_minutes``
(descriptor ``published``, 2×5 tanh networks, the EKF, 10 % test, the same seeded split in every row)
three ways, one row each:

 1. energy only                                   (``force=off``, features cached)
 2. energy only, with Taylor children             (row 1 + ``augment=taylor``: ``--children`` children per
                                                   training structure, ``--displacement`` Å RMS per component)
 3. force training                                (tio2_minutes itself: α = 0.15, a fixed 25 % of the
                                                   structures supervised on forces)

Each row trains in a fresh subprocess of this script (``--one``). The table gives the final test
energy RMSE (meV/atom) and test force RMSE (eV/Å, per component); the energy-only rows compute the
forces of the test structures after training (``tracking.save_forces=true``), so all three are
compared on the same test forces. Wall time is that of ``run_training`` (data, children, epochs,
final predictions); "training structures" counts the children (row 2) with their parents.

Usage::

    python scripts/bench_taylor.py [--shared PATH] [--epochs 14] [--limit N] [--children 4] [--displacement 0.02]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple, Sequence

from bench_training import first_structures

from benchlib import DEFAULT_SHARED, bench_main, machine_description, run_child

ENERGY_ONLY = ("force=subsampled", "force.weight=0", "caching.features=true", "caching.features_for_force=false", "caching.derivatives=false",
               "tracking.save_forces=true")
COMMON = ("experiment=tio2_minutes", "normalization.E_atomic={O: -432.503149303, Ti: -1604.604515075}",
          "tracking.enabled=false", "tracking.show_progress=false")


class Row(NamedTuple):
    label: str
    overrides: tuple[str, ...]


def rows(children: int, displacement: float) -> list[Row]:
    """The three trainings compared."""
    taylor = ("augment=taylor", f"augment.children={children}", f"augment.displacement={displacement}")
    return [
        Row("energy only", ENERGY_ONLY),
        Row(f"energy only + Taylor children ({children} × {displacement:g} Å)", ENERGY_ONLY + taylor),
        Row("forces (α = 0.15, 25 % of the structures)", ()),
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared folder with data/tio2-1000")
    parser.add_argument("--epochs", type=int, default=14, help="training epochs of every row")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N structures (by file name)")
    parser.add_argument("--children", type=int, default=4, help="Taylor children per training structure (row 2)")
    parser.add_argument("--displacement", type=float, default=0.02, help="Å, RMS per Cartesian component (row 2)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # JSON overrides: train them here, print the report
    return parser.parse_args(argv)


def table_line(row: Row, report: dict | None, error: str | None) -> str:
    """One markdown row: test energy RMSE (meV/atom), test force RMSE (eV/Å), wall time (s), training structures."""
    if report is None:
        return f"| {row.label} | failed: {(error or '').splitlines()[-1] if error else '?'} | | | |"
    final = report["final"]
    energy = 1000 * final["final/test/energy_rmse"]
    force = final.get("final/test/force_rmse")
    force_text = f"{force:.4f}" if force is not None else "n/a"
    return (f"| {row.label} | {energy:.2f} | {force_text} | {report['wall_s']:.0f} | "
            f"{report['facts']['dataset.train_structures']} |")


def benchmark(args: argparse.Namespace, tarball: Path) -> int:
    """Train every row in a subprocess and print the table."""
    print(machine_description())
    with tempfile.TemporaryDirectory() as tmp:
        data_path = first_structures(tarball, args.limit, Path(tmp)) if args.limit else tarball
        common = [*COMMON, f"data.path={data_path}", f"iterations={args.epochs}"]
        print(f"\n{args.epochs} epochs, data {data_path}\n")
        print("| training | test energy RMSE (meV/atom) | test force RMSE (eV/Å) | wall time (s) | training structures |")
        print("|---|---|---|---|---|")
        failed = False
        for row in rows(args.children, args.displacement):
            report, error = run_child(__file__, ["--one", json.dumps([*common, *row.overrides])])
            failed |= report is None
            print(table_line(row, report, error), flush=True)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(parse_args(argv), benchmark)


if __name__ == "__main__":
    sys.exit(main())
