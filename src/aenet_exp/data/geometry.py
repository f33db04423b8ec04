"""Neighbour pairs of a structure (vesin), safe for any geometry, and the closest pair of atoms.

vesin's cell list covers a molecule's bounding box with cells of the cutoff's size; a box of
millions of cells (an atom ~1e6 Å from the others) kills the process with SIGFPE. Non-periodic
structures that spread that far are first split where the atoms, sorted along an axis, leave a
gap wider than the cutoff (atoms on either side cannot be neighbours); a part still too spread
out (a chain) is searched by brute force.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from aenet_exp.data.structure import Structure

# A non-periodic box spanning more cutoffs than this along some axis is not given to vesin whole.
MAX_CELLS_PER_AXIS = 1000
MIN_DISTANCE = 0.1  # Å: atoms closer than this overlap; a broken structure (or an exploded simulation)
OVERLAP_SEARCH = 1.0  # Å: searched with this cutoff, then filtered (vesin's cell list is slow for tiny cutoffs)
BRUTE_FORCE_CHUNK = 2048  # atoms per block of the brute-force distance matrix


class NeighborList(NamedTuple):
    """All pairs ``i != j`` (periodic images included) within a cutoff, sorted by ``i`` then ``j``."""

    i: np.ndarray  # (n_pairs,) int64 centre atom
    j: np.ndarray  # (n_pairs,) int64 neighbour atom
    shift: np.ndarray  # (n_pairs, 3) int64 lattice translation of j
    distance: np.ndarray  # (n_pairs,) Å


def neighbor_list(structure: Structure, cutoff: float) -> NeighborList:
    """Pairs of ``structure`` with ``d_ij < cutoff`` (Å)."""
    positions = structure.positions
    if structure.is_periodic or len(positions) < 2 or compact(positions, cutoff):
        return vesin_pairs(structure, positions, cutoff)
    parts = [vesin_pairs(structure, positions[group], cutoff, group) if compact(positions[group], cutoff)
             else brute_force_pairs(positions, group, cutoff) for group in separated_groups(positions, cutoff)]
    merged = NeighborList(*(np.concatenate(column) for column in zip(*parts)))
    order = np.lexsort((merged.j, merged.i))
    return NeighborList(*(column[order] for column in merged))


def compact(positions: np.ndarray, cutoff: float) -> bool:
    """Whether a non-periodic box of ``positions`` spans at most :data:`MAX_CELLS_PER_AXIS` cutoffs per axis."""
    return len(positions) < 2 or bool(np.all(np.ptp(positions, axis=0) <= MAX_CELLS_PER_AXIS * cutoff))


def vesin_pairs(structure: Structure, positions: np.ndarray, cutoff: float, atoms: np.ndarray | None = None) -> NeighborList:
    """vesin's full, sorted list of ``positions`` (atom indices mapped through ``atoms`` when given)."""
    import vesin  # imports torch: only when neighbours are searched (config validation reads this package)

    box = structure.cell if structure.is_periodic else np.zeros((3, 3))
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True, sorted=True)
    i, j, shift, d = calculator.compute(positions, box, structure.pbc.tolist(), "ijSd")
    keep = d < cutoff
    i, j = i[keep].astype(np.int64), j[keep].astype(np.int64)
    if atoms is not None:
        i, j = atoms[i], atoms[j]
    return NeighborList(i, j, shift[keep].astype(np.int64), d[keep])


def separated_groups(positions: np.ndarray, cutoff: float) -> list[np.ndarray]:
    """Atom indices split where, sorted along x, then y, then z, consecutive atoms are ``cutoff`` or more apart."""
    groups = [np.arange(len(positions))]
    for axis in range(3):
        split = []
        for group in groups:
            order = group[np.argsort(positions[group, axis], kind="stable")]
            gaps = np.flatnonzero(np.diff(positions[order, axis]) >= cutoff) + 1
            split += np.split(order, gaps)
        groups = split
    return groups


def brute_force_pairs(positions: np.ndarray, atoms: np.ndarray, cutoff: float) -> NeighborList:
    """Pairs among ``atoms`` of a non-periodic structure by explicit distances, in blocks."""
    found = []
    for start in range(0, len(atoms), BRUTE_FORCE_CHUNK):
        block = atoms[start : start + BRUTE_FORCE_CHUNK]
        d = np.linalg.norm(positions[block, None, :] - positions[None, atoms, :], axis=-1)
        a, b = np.nonzero((d < cutoff) & (block[:, None] != atoms[None, :]))
        found.append((block[a], atoms[b], d[a, b]))
    i, j, d = (np.concatenate(column) for column in zip(*found))
    return NeighborList(i.astype(np.int64), j.astype(np.int64), np.zeros((len(i), 3), dtype=np.int64), d)


def closest_pair(structure: Structure) -> tuple[int, int, float] | None:
    """The two atoms closest to each other (periodic images included) if closer than :data:`OVERLAP_SEARCH`."""
    pairs = neighbor_list(structure, OVERLAP_SEARCH)
    if len(pairs.distance) == 0:
        return None
    k = int(np.argmin(pairs.distance))
    return int(pairs.i[k]), int(pairs.j[k]), float(pairs.distance[k])


def overlap_message(structure: Structure) -> str | None:
    """What is wrong when two atoms of ``structure`` are closer than :data:`MIN_DISTANCE` (None: nothing)."""
    closest = closest_pair(structure)
    if closest is None or closest[2] >= MIN_DISTANCE:
        return None
    i, j, d = closest
    s = structure.species
    return f"atoms {i} ({s[i]}) and {j} ({s[j]}) are {d:.3f} Å apart, closer than {MIN_DISTANCE} Å: overlapping atoms"
