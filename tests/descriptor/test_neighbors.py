"""Neighbour lists kept between MD steps with a skin give what fresh lists give, and are rebuilt when they may have
gone stale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aenet_exp.data import Structure, read_structures
from aenet_exp.descriptor.neighbors import NeighborReuse
from aenet_exp.model.forces import AnalyticInputs, GraphInputs, evaluate

from helpers import make_potential


@pytest.fixture
def cell(data_dir):
    return read_structures(data_dir / "tio2/structure0407.xsf")[0]


def moved(structure: Structure, displacement: np.ndarray, cell: np.ndarray | None = None) -> Structure:
    return Structure(structure.species, structure.positions + displacement, cell=structure.cell if cell is None else cell,
                     pbc=structure.pbc)


def forces(potential, graph):
    result = evaluate(potential, AnalyticInputs(potential.descriptor, graph.to(dtype=torch.float64), strain=True))
    return result.energy, result.forces, result.strain_derivative


def test_steps_within_half_the_skin_reuse_the_lists_and_match_fresh_ones(cell):
    potential = make_potential(["O", "Ti"])
    reuse = NeighborReuse(potential.descriptor, skin=1.0)
    rng = np.random.default_rng(0)
    for step in range(6):
        structure = moved(cell, rng.normal(0.0, 0.05, cell.positions.shape) * step / 3)
        got = forces(potential, reuse.graph(structure))
        fresh = evaluate(potential, GraphInputs(potential.descriptor, potential.descriptor.graph(structure).to(
            dtype=torch.float64), strain=True))
        for value, expected in zip(got, (fresh.energy, fresh.forces, fresh.strain_derivative)):
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-10)
    assert reuse.builds == 1


def test_a_jump_past_half_the_skin_a_new_cell_or_other_atoms_rebuild(cell):
    reuse = NeighborReuse(make_potential(["O", "Ti"]).descriptor, skin=0.6)
    reuse.graph(cell)
    jump = np.zeros_like(cell.positions)
    jump[3, 0] = 0.31
    reuse.graph(moved(cell, jump))
    assert reuse.builds == 2
    reuse.graph(moved(cell, jump, cell=cell.cell * 1.01))
    assert reuse.builds == 3
    fewer = Structure(cell.species[:-1], cell.positions[:-1], cell=cell.cell, pbc=cell.pbc)
    assert reuse.graph(fewer).positions.shape[0] == cell.n_atoms - 1 and reuse.builds == 4
    isolated = Structure(cell.species, cell.positions)
    reuse.graph(isolated)
    assert reuse.builds == 5


def test_no_reuse_with_a_minimal_distance(cell):
    potential = make_potential(["O", "Ti"], min_cutoff=0.5)
    reuse = NeighborReuse(potential.descriptor, skin=1.0)
    reuse.graph(cell), reuse.graph(cell)
    assert reuse.skin == 0 and reuse.builds == 2
