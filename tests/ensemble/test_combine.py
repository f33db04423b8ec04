"""Potentials trained apart combined into one committee (ensemble/combine.py)."""

from __future__ import annotations

import pytest
import torch

from aenet_exp.data import read_structures
from aenet_exp.descriptor import collate_graphs
from aenet_exp.ensemble.combine import Incompatible, combine
from aenet_exp.model import Potential, energy_and_forces
from aenet_exp.model.forces import GraphInputs, evaluate

from helpers import SMALL, make_potential


def differently_normalised(seed: int, members: int = 1) -> Potential:
    potential = make_potential(["O", "Ti"], seed=seed, rad_order=4, rad_cutoff=4.0, ang_order=2, ang_cutoff=3.0)
    if members > 1:
        settings = {**potential.settings(), "members": members}
        torch.manual_seed(seed)
        potential = Potential.from_settings(settings).astype(torch.float64)
    n = potential.descriptor.n_features
    generator = torch.Generator().manual_seed(seed)
    potential.set_normalization(
        feature_mean=torch.rand(n, generator=generator, dtype=torch.float64),
        feature_std=0.5 + torch.rand(n, generator=generator, dtype=torch.float64),
        energy_shift=-3.0 - seed, energy_scale=0.5 + 0.1 * seed,
        atomic_energies={"O": -1.0 * seed, "Ti": -2.0 - seed},
    )
    return potential.eval()


def test_members_keep_their_predictions_under_the_shared_normalisation():
    parts = [differently_normalised(1), differently_normalised(2, members=2), differently_normalised(3)]
    committee = combine(parts)
    assert committee.members == 4
    structures = read_structures(SMALL)[:3]
    graph = collate_graphs([committee.descriptor.graph(s) for s in structures]).to(dtype=torch.float64)
    combined = evaluate(committee, GraphInputs(committee.descriptor, graph))
    originals = [evaluate(p, GraphInputs(p.descriptor, graph)) for p in parts]
    energies = torch.cat([o.energy for o in originals])
    forces = torch.cat([o.forces for o in originals])
    torch.testing.assert_close(combined.energy, energies, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(combined.forces, forces, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(energy_and_forces(committee, graph)[0], energies.mean(0), rtol=1e-12, atol=1e-10)


def test_potentials_with_other_descriptors_or_networks_are_refused():
    base = differently_normalised(1)
    other_basis = make_potential(["O", "Ti"], seed=1, rad_order=5, rad_cutoff=4.0, ang_order=2, ang_cutoff=3.0)
    with pytest.raises(Incompatible, match=r"^its descriptor differs \(rad_order: 5 vs 4\)"):
        combine([base, other_basis])
    wider = Potential(base.descriptor, {"O": [9, 6], "Ti": [8, 6]}, base.architecture["activations"])
    with pytest.raises(Incompatible, match=r"^its hidden differs \(O: \[9, 6\] vs \[8, 6\]\)"):
        combine([base, wider])
