"""Neighbour pairs for any geometry and the closest pair of atoms (data/geometry.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from aenet_exp.data import Structure, read_structures
from aenet_exp.data.geometry import MAX_CELLS_PER_AXIS, closest_pair, neighbor_list, overlap_message

from helpers import DATA


def explicit_pairs(positions: np.ndarray, cutoff: float) -> set[tuple[int, int]]:
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return {(int(i), int(j)) for i, j in zip(*np.nonzero((d < cutoff) & ~np.eye(len(positions), dtype=bool)))}


@pytest.mark.parametrize("far", [1e3, 1e6, 1e12])
def test_an_atom_far_away_is_simply_isolated(far):
    positions = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 1.2, 0], [far, 0, 0], [far, 0.9, 0]])
    found = neighbor_list(Structure(["O", "H", "H", "O", "H"], positions), 4.0)
    assert set(zip(found.i.tolist(), found.j.tolist())) == explicit_pairs(positions, 4.0)
    assert list(zip(found.i, found.j)) == sorted(zip(found.i, found.j))  # sorted by centre, then neighbour


def test_a_chain_too_long_for_the_cell_list_is_searched_directly():
    n = int(MAX_CELLS_PER_AXIS * 4.0 / 2.0) + 50  # atoms 2 Å apart along x: longer than the cell list takes
    positions = np.zeros((n, 3))
    positions[:, 0] = 2.0 * np.arange(n)
    found = neighbor_list(Structure(["H"] * n, positions), 4.5)
    assert len(found.i) == 2 * (2 * n - 3)  # neighbours at 2 and 4 Å on both sides
    assert set(zip(found.i.tolist(), found.j.tolist())) == explicit_pairs(positions, 4.5)


def test_periodic_and_compact_structures_are_unchanged(data_dir):
    structure = read_structures(DATA / "tio2" / "structure0407.xsf")[0]
    assert len(neighbor_list(structure, 6.0).i) > 0
    assert closest_pair(structure) is None  # no two atoms within 1 Å


@pytest.mark.slow
def test_far_atom_does_not_kill_the_process():
    """vesin's cell list of a 1e6 Å box ended the process with SIGFPE (exit 136, nothing printed)."""
    code = ("import numpy as np; from aenet_exp.data import Structure; from aenet_exp.descriptor.graph import find_pairs;"
            "p, d = find_pairs(Structure(['O','H','H'], [[0,0,0],[1,0,0],[1e6,0,0]]), 6.0); print(len(d))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "2", done


def test_overlap_names_the_atoms():
    structure = Structure(["Ti", "O", "O"], [[0, 0, 0], [2, 2, 2], [2.05, 2, 2]], cell=np.eye(3) * 4, pbc=True)
    assert overlap_message(structure).startswith("atoms 1 (O) and 2 (O) are 0.050 Å apart")
