"""Featurization throughput (atoms/s) of the Chebyshev descriptor on the TiO2 data set.

Uses the published ænet-PyTorch TiO2 descriptor (species O, Ti; radial order 20, cutoff
6.5 Å; angular order 6, cutoff 5.0 Å; 56 features) on the 1000 structures of
``shared/data/tio2-1000/dir_xsf.tar.gz`` and times, for float32 and float64:

1. graph building alone (vesin neighbour pairs + triplets),
2. features alone from prebuilt graphs (no grad), one structure at a time and batched,
3. features + gradients with respect to positions (the cost profile of force training), batched,
4. end-to-end ``featurize(structure)``, one structure at a time.

Each timing is repeated ``--repeats`` times and the best is reported as one Markdown table.

Usage::

    python scripts/bench_descriptor.py [--shared PATH] [--limit N] [--repeats 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import torch

from aenet_exp.data import Structure, read_structures
from aenet_exp.descriptor import AtomGraph, ChebyshevDescriptor, collate_graphs

from benchlib import DEFAULT_SHARED, machine_description, tio2_tarball

PUBLISHED = dict(species=["O", "Ti"], rad_order=20, rad_cutoff=6.5, ang_order=6, ang_cutoff=5.0)
N_FEATURES = 56
DTYPES = (torch.float32, torch.float64)


class Row(NamedTuple):
    """One measurement: its label and the best wall time (s) per dtype."""

    label: str
    seconds: dict[torch.dtype, float]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared folder (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N structures")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement; the best is kept")
    parser.add_argument("--batch-size", type=int, default=32, help="structures per collated batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fixed random gradient weights")
    return parser.parse_args(argv)


def load_structures(tarball: Path, limit: int | None) -> list[Structure]:
    """The XSF structures of ``tarball`` (sorted by name), the first ``limit`` of them."""
    return read_structures(str(tarball))[:limit]


def best_time(task: Callable[[], object], repeats: int) -> float:
    """The shortest wall time (s) of ``repeats`` runs of ``task``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    return min(times)


def batches(graphs: list[AtomGraph], size: int, dtype: torch.dtype) -> list[AtomGraph]:
    """Graphs collated ``size`` at a time and cast to ``dtype``."""
    return [collate_graphs(graphs[k : k + size]).to(dtype=dtype) for k in range(0, len(graphs), size)]


def build_graphs(descriptor: ChebyshevDescriptor, structures: list[Structure]) -> list[AtomGraph]:
    return [descriptor.graph(s) for s in structures]


def features_each(descriptor: ChebyshevDescriptor, graphs: list[AtomGraph]) -> None:
    with torch.no_grad():
        for graph in graphs:
            descriptor(graph)


def features_with_gradients(
    descriptor: ChebyshevDescriptor, graphs: list[AtomGraph], weights: list[torch.Tensor]
) -> None:
    """Features of each graph with live positions, then d(sum(features * weights))/d(positions)."""
    for graph, weight in zip(graphs, weights):
        positions = graph.positions.detach().requires_grad_(True)
        features = descriptor(graph._replace(positions=positions))
        torch.autograd.grad((features * weight).sum(), positions)


def featurize_each(descriptor: ChebyshevDescriptor, structures: list[Structure]) -> None:
    with torch.no_grad():
        for structure in structures:
            descriptor.featurize(structure)


def measure(structures: list[Structure], args: argparse.Namespace) -> tuple[list[Row], list[AtomGraph]]:
    """Best times of every measurement for every dtype, and the graphs (for counting)."""
    labels = [
        "graph building (vesin pairs + triplets)",
        "features, no grad, per structure",
        f"features, no grad, batched {args.batch_size}",
        f"features + gradients w.r.t. positions, batched {args.batch_size}",
        "end-to-end featurize(structure), per structure",
    ]
    seconds: dict[str, dict[torch.dtype, float]] = {label: {} for label in labels}
    generator = torch.Generator().manual_seed(args.seed)
    graphs: list[AtomGraph] = []
    for dtype in DTYPES:
        descriptor = ChebyshevDescriptor(**PUBLISHED, dtype=dtype)
        assert descriptor.n_features == N_FEATURES, descriptor.n_features
        graphs = build_graphs(descriptor, structures)
        single = [g.to(dtype=dtype) for g in graphs]
        batched = batches(graphs, args.batch_size, dtype)
        weights = [torch.rand(len(b.species), N_FEATURES, generator=generator, dtype=dtype) for b in batched]
        tasks = [
            lambda: build_graphs(descriptor, structures),
            lambda: features_each(descriptor, single),
            lambda: features_each(descriptor, batched),
            lambda: features_with_gradients(descriptor, batched, weights),
            lambda: featurize_each(descriptor, structures),
        ]
        for label, task in zip(labels, tasks):
            seconds[label][dtype] = best_time(task, args.repeats)
    return [Row(label, seconds[label]) for label in labels], graphs


def table(rows: list[Row], n_atoms: int, n_structures: int) -> str:
    """Markdown table: atoms/s per dtype and ms/structure (float32 / float64)."""
    lines = [
        "| measurement | float32 atoms/s | float64 atoms/s | ms/structure (f32 / f64) |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        f32, f64 = row.seconds[torch.float32], row.seconds[torch.float64]
        per_structure = f"{1e3 * f32 / n_structures:.3f} / {1e3 * f64 / n_structures:.3f}"
        lines.append(f"| {row.label} | {n_atoms / f32:,.0f} | {n_atoms / f64:,.0f} | {per_structure} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tarball = tio2_tarball(args.shared)
    if tarball is None:
        return 0
    machine = machine_description()
    structures = load_structures(tarball, args.limit)
    rows, graphs = measure(structures, args)
    n_atoms = sum(s.n_atoms for s in structures)
    n_pairs = sum(len(g.pairs.center) for g in graphs)
    n_triplets = sum(len(g.triplets.center) for g in graphs)
    print(machine)
    print(f"Descriptor: {PUBLISHED}, {N_FEATURES} features; best of {args.repeats} repeats")
    print(f"Structures: {len(structures):,}, atoms: {n_atoms:,}, pairs: {n_pairs:,}, triplets: {n_triplets:,}")
    print("(graph building does not depend on dtype: its two columns are two independent timings)")
    print()
    print(table(rows, n_atoms, len(structures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
