"""Committees (committee=deep): members trained together equal single models; uncertainty metrics and calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aenet_exp.calculator import Calculator
from aenet_exp.config.effects import ineffective_keys
from aenet_exp.config.validation import ConfigError, validate
from aenet_exp.data import read_structures
from aenet_exp.evaluation.uncertainty import rank_correlation
from aenet_exp.model import Potential
from aenet_exp.model.calibration import Calibration
from aenet_exp.training.bootstrap import BatchWeights, MemberWeights
from aenet_exp.training.supervision import ForceSupervision

from helpers import compose_train, make_potential, train
from helpers.committee_cases import CASES, REFERENCE, single_model_metrics

NO_CALIBRATION = ["committee=deep", "committee.calibrate=false"]


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("committee", [["committee=none"], [*NO_CALIBRATION, "committee.members=1"]], ids=["none", "deep-1"])
def test_a_one_member_committee_is_the_single_model_of_before(tmp_path, reference, committee):
    """Every metric of every epoch equals what the single-network code computed (float64, 1e-12)."""
    found = single_model_metrics(tmp_path, *committee)
    assert found.keys() == CASES.keys()
    for case, epochs in found.items():
        assert len(epochs) == len(reference[case])
        for expected, got in zip(reference[case], epochs):
            assert got.keys() == expected.keys(), case
            for key, value in expected.items():
                assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), (case, key)


@pytest.mark.parametrize("caching", ["caching=none", "caching.derivatives=true"], ids=["graphs", "jacobians"])
def test_member_k_is_the_single_model_of_seed_k(fast_config, tmp_path, caching):
    """Members share features and batches but never interact: member 1 of seeds [5, 6, 7] equals the single model
    whose weights were drawn from seed 6, trained on the same batches (those of ``seed``)."""
    common = [*NO_CALIBRATION, caching, "precision=float64", "force.weight=0.3", "iterations=3", "seed=11"]
    train(fast_config(*common, "committee.members=3", "committee.seeds=[5,6,7]"), tmp_path / "committee")
    train(fast_config(*common, "committee.members=1", "committee.seeds=[6]"), tmp_path / "single")
    committee = Potential.load(tmp_path / "committee" / "potential.pt")
    single = Potential.load(tmp_path / "single" / "potential.pt")
    assert committee.members == 3 and single.members == 1
    got, expected = committee.member(1).state_dict(), single.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-10, atol=1e-12, msg=name)
    members = [committee.member(k).networks.nets["Ti"][0].weight for k in range(3)]
    assert not torch.allclose(members[0], members[2])  # the members differ


def test_member_seeds_draw_the_single_models_initial_weights():
    torch.manual_seed(3)
    single = make_potential(["Ti", "O"], seed=8)
    committee = Potential(single.descriptor, single.architecture["hidden"], single.architecture["activations"],
                          members=2, seeds=[1, 8])
    for name, value in single.networks.state_dict().items():
        torch.testing.assert_close(committee.networks.state_dict()[name][1:], value, rtol=0, atol=0)


def test_committee_metrics_are_of_the_mean_with_the_spread(fast_config, tmp_path):
    metrics, rec = train(fast_config(*NO_CALIBRATION, "committee.members=3", "force.weight=0.3", "tracking.save_energies=true",
                                     "tracking.save_forces=true"), tmp_path)
    for split in ("train", "test"):
        assert rec.epochs[-1][f"{split}/energy_std"] > 0 and rec.epochs[-1][f"{split}/force_std"] > 0
    assert {"final/test/energy_nll", "final/test/energy_spearman", "final/test/force_miscalibration_area"} <= metrics.keys()
    assert "final/calibration/energy_factor" not in metrics
    energies = (tmp_path / "energies.test.predicted").read_text().splitlines()
    assert energies[0].split()[-2:] == ["E_std_eV", "E_std_eV_per_atom"]
    forces = (tmp_path / "forces.test.predicted").read_text().splitlines()
    assert "Fx_std" in forces[0] and len(forces[1].split()) == len(forces[0].lstrip("# ").split()) - 1


def test_calibration_scales_sigma_by_the_logged_factor_and_keeps_the_ranking(fast_config, tmp_path, data_dir):
    metrics, rec = train(fast_config("committee=deep", "committee.members=3", "force.weight=0.3",
                                     "committee.calibration_percent=30"), tmp_path)
    assert rec.facts["dataset.calibration_structures"] == 4  # 30 % of the 12 training structures of 16
    assert rec.facts["dataset.train_structures"] == 8
    factors = metrics["final/calibration/energy_factor"], metrics["final/calibration/force_factor"]
    potential = Potential.load(tmp_path / "potential.pt")
    kept = potential.calibration
    assert [kept.energy, kept.force] == pytest.approx(list(factors), rel=1e-6)  # float32 buffer
    structures = read_structures(data_dir / "tio2-small")[:5]
    calibrated = Calculator(potential).predict(structures)
    potential.calibration = Calibration()
    raw = Calculator(potential).predict(structures)
    np.testing.assert_allclose(calibrated.energy_std, raw.energy_std * np.float32(factors[0]), rtol=1e-12)
    np.testing.assert_allclose(np.concatenate(calibrated.force_std), np.concatenate(raw.force_std) * np.float32(factors[1]),
                               rtol=1e-12)
    assert rank_correlation(calibrated.energy_std, np.arange(5)) == rank_correlation(raw.energy_std, np.arange(5))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["committee=deep", "committee.members=3", "committee.seeds=[1,2]"], "^committee.seeds: gives 2 seeds for 3 members"),
        (["committee=deep", "committee.members=3", "committee.seeds=[7,7,7]"], r"^committee.seeds: repeats \[7\]: members"),
        (["committee=deep", "committee.members=1"], "^committee.calibrate: needs a spread to calibrate"),
        (["committee=deep", "committee.members=0"], "^committee.members: expected a positive number of members"),
        (["committee=deep", "optimizer=ekf", "scheduler=none"], "^committee.members: is 5, but optimizer=ekf steps all"),
        (["committee=deep", "optimizer=lbfgs"], "^committee.members: is 5, but optimizer=lbfgs"),
        (["committee=deep", "scheduler=plateau"], "^scheduler: is plateau, which would steer every member"),
        (["committee=deep", "committee.members=1", "committee.calibrate=false", "committee.bootstrap=true", "optimizer=ekf",
          "scheduler=none"], "^committee.bootstrap: weights each structure's errors"),
    ],
)
def test_committee_settings_that_cannot_work_name_the_key(fast_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(fast_config(*overrides))


def test_a_calibration_split_left_empty_names_the_key(fast_config, tmp_path):
    with pytest.raises(ConfigError, match=r"^committee.calibration_percent: is 1.0, which leaves 12 training and 0 "):
        train(fast_config("committee=deep", "committee.members=2", "committee.calibration_percent=1"), tmp_path)


def test_fine_tuning_needs_as_many_members(fast_config, tmp_path):
    train(fast_config(*NO_CALIBRATION, "committee.members=2"), tmp_path / "two")
    with pytest.raises(ConfigError, match="^init_from: the model has 2 committee member"):
        train(fast_config(f"init_from={tmp_path / 'two'}"), tmp_path / "one")


def test_a_bootstrap_weight_counts_a_structure_as_often_as_it_was_drawn():
    """Member 0 drew structure 0 twice and never structure 1: its batch loss is that of the batch with structure 0
    in it twice and structure 1 left out; member 1 drew each once."""
    torch.manual_seed(0)
    energy, force = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)  # 1 atom each
    counts = torch.tensor([[2.0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.float64)
    supervision = ForceSupervision(0.4, candidates=np.arange(4), seed=0)
    weighted = supervision.batch_loss(energy, force, 0.5, BatchWeights(counts, counts.unsqueeze(-1)))
    drawn = [0, 0, 2, 3]
    expected = (supervision.batch_loss(energy[:1, drawn], force[:1, drawn], 0.5)
                + supervision.batch_loss(energy[1:], force[1:], 0.5))
    assert float(weighted) == pytest.approx(float(expected), rel=1e-14)


def test_each_member_resamples_the_training_split_from_its_own_seed():
    train, n_atoms = np.array([0, 2, 3, 5, 6, 7]), np.array([1, 2, 3, 4, 5, 6, 7, 8])
    weights = MemberWeights(train, n_atoms, [5, 6], torch.device("cpu"), torch.float64)
    counts = weights.counts.numpy()
    assert counts.sum(1).tolist() == [6.0, 6.0] and not counts[:, [1, 4]].any()  # only training structures
    assert not np.array_equal(counts[0], counts[1])
    alone = MemberWeights(train, n_atoms, [6], torch.device("cpu"), torch.float64).counts.numpy()
    np.testing.assert_array_equal(alone[0], counts[1])  # member k's resample depends on its seed alone
    batch = weights.batch([3, 0, 5], [5, 0])
    np.testing.assert_array_equal(batch.energy.numpy(), counts[:, [3, 0, 5]])
    per_atom = np.repeat(counts[:, [5, 0]], [6, 1], axis=1)  # structure 5 has 6 atoms, structure 0 one
    np.testing.assert_array_equal(batch.force.squeeze(-1).numpy(), per_atom)


def test_a_bootstrapped_committee_trains_members_on_different_resamples(fast_config, tmp_path):
    common = [*NO_CALIBRATION, "committee.members=2", "force.weight=0.3", "precision=float64"]
    plain, _ = train(fast_config(*common), tmp_path / "plain")
    bootstrapped, rec = train(fast_config(*common, "committee.bootstrap=true"), tmp_path / "bootstrap")
    assert bootstrapped["final/test/energy_rmse"] != pytest.approx(plain["final/test/energy_rmse"], rel=1e-6)
    assert rec.epochs[-1]["train/loss"] > 0
