"""Exploration runs MD with the committee, records frames with the σ it gives them, and stops a trajectory that has
left physical space."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from aenet_exp.calculator import Calculator
from aenet_exp.descriptor import ChebyshevDescriptor
from aenet_exp.learning.explore import Exploration, committee_sigma, explore, mean_features, trajectory
from aenet_exp.learning.trust import TrustWindow
from aenet_exp.model import Potential


@pytest.fixture(scope="module")
def committee():
    """An untrained three-member committee for Cu (its σ is large, its forces small: enough to drive short MD)."""
    torch.manual_seed(0)
    descriptor = ChebyshevDescriptor(["Cu"], rad_order=4, rad_cutoff=4.0, ang_order=2, ang_cutoff=3.0, dtype=torch.float64)
    potential = Potential(descriptor, {"Cu": [4]}, {"Cu": ["tanh"]}, members=3, seeds=[0, 1, 2])
    potential.set_normalization(feature_std=torch.full((descriptor.n_features,), 10.0), energy_scale=0.05)
    return potential


def copper():
    return bulk("Cu", "fcc", a=3.6, cubic=True)


MD = Exploration("md", (300.0,), steps=20, timestep=2.0, friction=0.02, trajectories=1, every=5, patience=3)
WIDE = TrustWindow(1e3, 1e4)  # nothing fails


def test_frames_every_few_steps_with_the_committees_sigma(committee):
    calculator = Calculator(committee)
    frames = trajectory(copper(), calculator, MD, 300.0, 7, WIDE, "forces", np.random.default_rng(0))
    assert [f.step for f in frames] == [5, 10, 15, 20] and {f.trajectory for f in frames} == {7}
    for frame in frames:
        atoms = frame.atoms.copy()
        atoms.calc = Calculator(committee)
        force_sigma, energy_sigma = committee_sigma(atoms)
        assert frame.force_sigma == pytest.approx(force_sigma, rel=1e-12) and force_sigma > 0
        assert frame.energy_sigma == pytest.approx(energy_sigma, rel=1e-12)
        assert frame.force_sigma == pytest.approx(np.linalg.norm(atoms.calc.results["forces_std"], axis=1).max())
    assert not np.allclose(frames[0].atoms.positions, frames[-1].atoms.positions)  # the atoms moved


def test_a_trajectory_of_failed_frames_stops_after_patience(committee):
    frames = trajectory(copper(), Calculator(committee), MD, 300.0, 0, TrustWindow(0.0, 1e-12), "forces",
                        np.random.default_rng(0))
    assert len(frames) == MD.patience


def test_every_temperature_and_trajectory_is_run_and_seeded(committee):
    exploration = Exploration("md", (100.0, 600.0), steps=10, timestep=2.0, friction=0.02, trajectories=2, every=5,
                              patience=3)
    frames = explore([copper()], Calculator(committee), exploration, WIDE, "energy", np.random.default_rng(4))
    assert [(f.temperature, f.trajectory) for f in frames] == [(100.0, 0)] * 2 + [(100.0, 1)] * 2 + [(600.0, 2)] * 2 + [(600.0, 3)] * 2
    again = explore([copper()], Calculator(committee), exploration, WIDE, "energy", np.random.default_rng(4))
    np.testing.assert_array_equal(frames[-1].atoms.positions, again[-1].atoms.positions)


def test_npt_changes_the_cell(committee):
    npt = Exploration("npt", (300.0,), steps=10, timestep=2.0, friction=0.02, trajectories=1, every=5, patience=3,
                      pressure=50.0, taup=50.0)
    frames = trajectory(copper(), Calculator(committee), npt, 300.0, 0, WIDE, "forces", np.random.default_rng(0))
    assert len(frames) == 2 and not np.allclose(frames[-1].atoms.cell.array, copper().cell.array)


def test_mean_features_are_standardised_per_feature(committee):
    frames = trajectory(copper(), Calculator(committee), MD, 300.0, 0, WIDE, "forces", np.random.default_rng(1))
    features = mean_features(committee.descriptor, frames)
    assert features.shape == (4, committee.descriptor.n_features)
    varying = features.std(0) > 0
    np.testing.assert_allclose(features.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(features.std(0)[varying], 1, rtol=1e-9)
