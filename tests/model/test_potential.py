"""The potential and its per-species networks: energies as the sum of network outputs, activations, saving."""

from __future__ import annotations

import pytest
import torch

from aenet_exp.data import read_structures
from aenet_exp.model import (
    ACTIVATIONS,
    Potential,
    SpeciesNetworks,
)

from helpers import make_potential


def test_energy_is_sum_of_per_species_network_outputs(data_dir):
    structure = read_structures(data_dir / "tio2/structure0407.xsf")[0]
    potential = make_potential(["Ti", "O"])
    features = potential.descriptor.featurize(structure)
    expected = 0.0
    with torch.no_grad():
        for symbol, row in zip(structure.species, features):
            standardised = (row - potential.feature_mean) / potential.feature_std
            out = potential.networks.nets[symbol](standardised.view(1, 1, -1)).item()
            expected += 0.7 * out - 3.0 + {"Ti": -1.0, "O": -2.0}[symbol]
        energy = potential(potential.descriptor.graph(structure)).item()
    assert energy == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_builds_and_differentiates(name):
    nets = SpeciesNetworks(["H"], 4, {"H": [3]}, {"H": [name]}).double()
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: nets(t, torch.zeros(5, dtype=torch.long)), (x,))


def test_unknown_activation_and_missing_species_are_named():
    with pytest.raises(ValueError, match="'softsign'"):
        SpeciesNetworks(["H"], 4, {"H": [3]}, {"H": ["softsign"]})
    with pytest.raises(ValueError, match=r"\['O'\]"):
        SpeciesNetworks(["H", "O"], 4, {"H": [3]}, {"H": ["tanh"]})


def test_save_and_load_roundtrip(tmp_path, data_dir):
    structure = read_structures(data_dir / "tio2/structure0407.xsf")[0]
    potential = make_potential(["Ti", "O"], seed=4)
    potential.set_normalization(feature_mean=torch.linspace(0, 1, potential.descriptor.n_features))
    path = tmp_path / "model" / "potential.pt"
    potential.save(path)
    loaded = Potential.load(path)
    graph = potential.descriptor.graph(structure)
    with torch.no_grad():
        assert loaded(graph).item() == potential(graph).item()
    assert loaded.settings() == potential.settings()
    assert [p.name for p in path.parent.iterdir()] == ["potential.pt"]


def test_load_refuses_a_pickle_that_runs_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"settings": Exploit(), "state_dict": {}}, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        Potential.load(path)

