"""Taylor children (data/taylor.py): energies E − Σ δ·F, no forces, seeded Gaussian displacements."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from aenet_exp.data import read_structures
from aenet_exp.data.taylor import TaylorExpansion, taylor_child

from helpers import SMALL


@pytest.fixture(scope="module")
def parents():
    return read_structures(SMALL)


def test_child_energy_is_the_first_order_taylor_expansion_and_children_have_no_forces(parents):
    expansion = TaylorExpansion(children=3, displacement=0.05, seed=7)
    for key, parent in enumerate(parents[:4]):
        children = expansion.children_of(parent, key)
        assert [c.index for c in children] == [0, 1, 2] and {c.parent for c in children} == {key}
        for child in children:
            s = child.structure
            delta = s.positions - parent.positions
            expected = parent.energy - np.sum(delta * parent.forces)
            assert s.energy == pytest.approx(expected, abs=1e-12, rel=0)
            assert s.forces is None
            assert s.species == parent.species
            np.testing.assert_array_equal(s.cell, parent.cell)
            assert child.displacement_rms == pytest.approx(np.sqrt(np.mean(delta**2)), rel=1e-9)


def test_taylor_child_of_a_hand_made_displacement(parents):
    parent = parents[0]
    delta = np.zeros((parent.n_atoms, 3))
    delta[0] = [0.01, -0.02, 0.03]
    child = taylor_child(parent, delta)
    assert child.energy == parent.energy - float(delta[0] @ parent.forces[0])
    np.testing.assert_array_equal(child.positions[1:], parent.positions[1:])


def test_displacement_is_the_rms_per_cartesian_component(parents):
    """Pooled over many children, δ has mean 0 and standard deviation ``displacement`` per component
    (so an atom's displacement vector has RMS length √3·displacement)."""
    sigma = 0.03
    deltas = np.concatenate([
        c.structure.positions - parent.positions
        for key, parent in enumerate(parents)
        for c in TaylorExpansion(children=50, displacement=sigma, seed=1).children_of(parent, key)
    ])
    components = deltas.size  # about 7 000 per 1 % of standard error
    assert components > 20_000
    assert np.sqrt(np.mean(deltas**2)) == pytest.approx(sigma, rel=0.03)
    assert abs(deltas.mean()) < 4 * sigma / np.sqrt(components)
    assert np.sqrt(np.mean(np.sum(deltas**2, axis=1))) == pytest.approx(np.sqrt(3) * sigma, rel=0.03)


def test_same_seed_same_children_other_seed_or_parent_other_children(parents):
    parent = parents[2]

    def positions(seed, key=2):
        return np.stack([c.structure.positions for c in TaylorExpansion(2, 0.02, seed).children_of(parent, key)])

    np.testing.assert_array_equal(positions(5), positions(5))
    assert not np.allclose(positions(5), positions(6))
    assert not np.allclose(positions(5), positions(5, key=3))


def test_a_parent_without_forces_has_no_children(parents):
    bare = dataclasses.replace(parents[0], forces=None)
    assert TaylorExpansion(3, 0.02, 0).children_of(bare, 0) == []


def test_interleaved_streams_each_structure_then_its_children(parents):
    items = list(TaylorExpansion(2, 0.02, 0).interleaved([parents[0], dataclasses.replace(parents[1], forces=None),
                                                          parents[2]]))
    kinds = [getattr(item, "parent", None) for item in items]
    assert kinds == [None, 0, 0, None, None, 2, 2]
