"""A committee's σ (model/calibration.py): the one reduction of members to mean and σ, and its calibration, fitted,
applied, saved and loaded with the potential."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aenet_exp.data import read_structures
from aenet_exp.descriptor import collate_graphs
from aenet_exp.evaluation.predictions import Predictions
from aenet_exp.model import GraphInputs, Potential, evaluate
from aenet_exp.model.calibration import Calibration, mean_and_spread

from helpers import make_potential


def committee_of(members: int, seed: int = 1) -> Potential:
    """A float64 committee of ``members`` with :func:`make_potential`'s normalisation."""
    single = make_potential(["Ti", "O"], seed=seed)
    committee = Potential(single.descriptor, single.architecture["hidden"], single.architecture["activations"],
                          members=members, seeds=list(range(seed, seed + members)))
    committee.load_state_dict({**single.state_dict(), **{k: v for k, v in committee.state_dict().items()
                                                         if k.startswith("networks.")}})
    return committee


def hand_made(with_forces: bool) -> Predictions:
    """Two structures of 1 and 2 atoms: energy errors per atom (0.2, −0.3) with σ per atom (0.1, 0.3), and the second
    structure's force errors (0.5, 0, 0, −1, 0, 0) with σ 0.5 and 0.25 (zero components: σ 0.5, left in)."""
    force_ref = [None, np.zeros((2, 3))] if with_forces else [None, None]
    force_pred = [None, np.array([[0.5, 0, 0], [-1.0, 0, 0]])] if with_forces else [None, None]
    force_std = [None, np.array([[0.5, 0.5, 0.5], [0.25, 0.5, 0.5]])] if with_forces else [None, None]
    return Predictions(
        indices=np.arange(2), energy_ref=np.array([1.0, 2.0]), energy_pred=np.array([1.2, 1.4]), n_atoms=np.array([1, 2]),
        force_ref=force_ref, force_pred=force_pred, energy_std=np.array([0.1, 0.6]), force_std=force_std,
    )


def test_fit_is_the_closed_form_on_hand_made_errors():
    fitted = Calibration.fit(hand_made(with_forces=True))
    assert fitted.energy == pytest.approx(math.sqrt((2.0**2 + 1.0**2) / 2), rel=1e-15)  # e/σ = 2, −1
    assert fitted.force == pytest.approx(math.sqrt((1.0 + 16.0) / 6), rel=1e-15)  # e/σ = 1, 0, 0, −4, 0, 0
    assert fitted.metrics(7) == {"final/calibration/energy_factor": fitted.energy,
                                 "final/calibration/force_factor": fitted.force, "final/calibration/structures": 7}
    energy_only = Calibration.fit(hand_made(with_forces=False))
    assert energy_only.energy == fitted.energy and energy_only.force is None and energy_only.factor("force") == 1.0
    assert "final/calibration/force_factor" not in energy_only.metrics(7)


def test_apply_gives_the_mean_and_the_members_std_times_the_factor():
    members = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 8.0]], dtype=torch.float64)
    mean, sigma = Calibration(energy=1.5, force=3.0).apply(members, "energy")
    assert mean.tolist() == [3.0, 4.0]
    np.testing.assert_allclose(sigma.numpy(), 1.5 * members.numpy().std(0, ddof=1), rtol=1e-15)
    _, forces_sigma = Calibration(energy=1.5, force=3.0).apply(members, "force", unit=0.5)  # σ in units of 0.5 eV
    np.testing.assert_allclose(forces_sigma.numpy(), 1.5 * members.numpy().std(0, ddof=1), rtol=1e-15)
    mean, sigma = Calibration(2.0).apply(members[:1], "energy")
    assert mean.tolist() == [1.0, 2.0] and sigma is None  # a single potential has no σ
    assert mean_and_spread(members)[1].tolist() == members.std(0).tolist()  # uncalibrated: factor 1


def test_a_committees_sigma_is_the_std_of_its_members_evaluated_one_by_one(data_dir):
    committee = committee_of(3)
    committee.calibration = Calibration(1.5, 2.0)
    structures = read_structures(data_dir / "tio2-small")[:3]
    graph = collate_graphs([committee.descriptor.graph(s) for s in structures])
    result = evaluate(committee, GraphInputs(committee.descriptor, graph))
    energy, energy_std = committee.calibration.apply(result.energy.detach(), "energy")
    forces, forces_std = committee.calibration.apply(result.forces.detach(), "force")
    one_by_one = [evaluate(committee.member(k), GraphInputs(committee.descriptor, graph)) for k in range(3)]
    energies = np.stack([member.energy.detach()[0].numpy() for member in one_by_one])  # (3, n_structures)
    member_forces = np.stack([member.forces.detach()[0].numpy() for member in one_by_one])  # (3, n_atoms, 3)
    np.testing.assert_allclose(energy.numpy(), energies.mean(0), rtol=1e-13)
    np.testing.assert_allclose(energy_std.numpy(), 1.5 * energies.std(0, ddof=1), rtol=1e-9)
    np.testing.assert_allclose(forces.numpy(), member_forces.mean(0), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(forces_std.numpy(), 2.0 * member_forces.std(0, ddof=1), rtol=1e-9, atol=1e-13)


def test_a_potential_saved_and_loaded_keeps_its_calibration(tmp_path):
    committee = committee_of(2)
    assert committee.calibration == Calibration(1.0, 1.0)  # σ as the members give it until calibrated
    committee.calibration = Calibration(energy=1.25, force=2.5)
    committee.save(tmp_path / "committee.pt")
    loaded = Potential.load(tmp_path / "committee.pt")
    assert loaded.calibration == Calibration(1.25, 2.5)
    assert loaded.state_dict()["sigma_scale"].tolist() == [1.25, 2.5]  # the buffer every saved model has
    factor = Calibration(energy=1 / 3).energy
    loaded.calibration = Calibration(energy=factor)
    assert loaded.calibration.energy == float(np.float32(factor))  # kept to float32 precision in every dtype
    assert loaded.calibration.force == 1.0


def test_a_state_dict_saved_with_sigma_scale_loads_its_calibration(tmp_path):
    """Files written before the calibration had its object: the factors in the ``sigma_scale`` buffer."""
    committee = committee_of(2)
    state = {**committee.state_dict(), "sigma_scale": torch.tensor([1.5, 2.0], dtype=torch.float64)}
    torch.save({"settings": committee.settings(), "state_dict": state}, tmp_path / "today.pt")
    assert Potential.load(tmp_path / "today.pt").calibration == Calibration(1.5, 2.0)


def test_a_model_saved_before_committees_loads_as_one_member(tmp_path, data_dir):
    """Files of the single-network code: ``nn.Linear`` weights ``(n_out, n_in)``, no ``members``, no ``sigma_scale``."""
    potential = make_potential(["Ti", "O"], seed=2)
    state = {k: (v[0] if k.startswith("networks.") else v) for k, v in potential.state_dict().items() if k != "sigma_scale"}
    settings = {k: v for k, v in potential.settings().items() if k != "members"}
    torch.save({"settings": settings, "state_dict": state}, tmp_path / "old.pt")
    loaded = Potential.load(tmp_path / "old.pt")
    structure = read_structures(data_dir / "tio2/structure0407.xsf")[0]
    graph = potential.descriptor.graph(structure)
    assert loaded.members == 1 and loaded.calibration == Calibration(1.0, 1.0)
    with torch.no_grad():
        assert float(loaded(graph)) == float(potential(graph))
