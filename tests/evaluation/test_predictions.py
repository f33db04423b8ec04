"""Predictions of a data set from batches of member outputs (evaluation/predictions.py)."""

from __future__ import annotations

import numpy as np
import torch

from aenet_exp.evaluation.predictions import BatchOutput, DataSet, predictions_of
from aenet_exp.model import Potential
from aenet_exp.model.calibration import Calibration

from helpers import make_potential


def committee(members: int):
    """A potential of ``members`` (energy scale 0.7) calibrated with factors 2 (energies) and 3 (forces)."""
    single = make_potential(["H"], seed=1)
    potential = Potential(single.descriptor, single.architecture["hidden"], single.architecture["activations"],
                          members=members)
    potential.set_normalization(energy_scale=0.7)
    potential.calibration = Calibration(2.0, 3.0)
    return potential


def batches() -> list[BatchOutput | None]:
    """Structures 3 and 1 (forces of 3: two atoms), an empty batch, then structure 0 (no forces); two members."""
    forces = torch.tensor([[[1.0, 0, 0], [0, 1, 0]], [[3.0, 0, 0], [0, 3, 0]]], dtype=torch.float64)
    reference = torch.tensor([[2.0, 0, 0], [0, 2, 0]], dtype=torch.float64)
    return [
        BatchOutput([3, 1], torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64), [3], forces, reference),
        None,
        BatchOutput([0], torch.tensor([[-1.0], [1.0]], dtype=torch.float64), [], None, None),
    ]


DATA = DataSet(energy=np.array([10.0, 11.0, 12.0, 13.0]), n_atoms=np.array([1, 3, 1, 2]),
               offset=np.array([100.0, 200.0, 300.0, 400.0]))


def test_a_committees_mean_and_calibrated_sigma_in_the_order_asked():
    found = predictions_of(committee(2), batches(), np.array([0, 1, 3]), DATA)
    assert found.indices.tolist() == [0, 1, 3]
    assert found.energy_ref.tolist() == [10.0, 11.0, 13.0] and found.n_atoms.tolist() == [1, 3, 2]
    # normalised means 0, 4, 2 -> offset + 0.7 · mean (eV); σ (2·0.7)·std: std 1.414.., 2.828.., 1.414..
    np.testing.assert_allclose(found.energy_pred, [100.0, 200.0 + 0.7 * 4, 400.0 + 0.7 * 2], rtol=1e-15)
    np.testing.assert_allclose(found.energy_std, 1.4 * np.sqrt([2.0, 8.0, 2.0]), rtol=1e-15)
    assert found.force_ref[:2] == [None, None] and found.force_pred[:2] == [None, None]
    np.testing.assert_array_equal(found.force_pred[2], [[2.0, 0, 0], [0, 2, 0]])
    np.testing.assert_array_equal(found.force_ref[2], [[2.0, 0, 0], [0, 2, 0]])
    np.testing.assert_allclose(found.force_std[2], 3.0 * np.sqrt(2.0) * np.array([[1.0, 0, 0], [0, 1, 0]]), rtol=1e-15)


def test_a_single_potential_has_no_sigma_and_outputs_in_ev_are_taken_as_they_are():
    single = committee(1)
    output = BatchOutput([1, 0], torch.tensor([[5.0, 7.0]], dtype=torch.float64), [], None, None)
    found = predictions_of(single, [output], np.array([0, 1]), DataSet(DATA.energy, DATA.n_atoms))
    assert found.energy_pred.tolist() == [7.0, 5.0]
    assert found.energy_std is None and found.force_std == [] and found.reference is None


def test_predicting_nothing_gives_empty_predictions():
    found = predictions_of(committee(2), [], np.array([], dtype=int), DATA)
    assert found.energy_pred.shape == (0,) and found.energy_std.shape == (0,) and found.force_pred == []


def test_sigma_per_atom_and_the_spread_of_labelled_forces():
    found = predictions_of(committee(2), batches(), np.array([0, 1, 3]), DATA)
    np.testing.assert_allclose(found.energy_std_per_atom(), found.energy_std / np.array([1, 3, 2]), rtol=1e-15)
    energy_sigma, force_sigma = found.spread()
    np.testing.assert_array_equal(energy_sigma, found.energy_std_per_atom())
    np.testing.assert_array_equal(force_sigma, found.force_std[2].ravel())  # only structure 3 has reference forces
    assert predictions_of(committee(1), [], np.array([], dtype=int), DATA).energy_std_per_atom() is None
