"""Per-species networks and the potential: energies, forces against finite differences, saving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aenet_exp.data import Structure, read_structures
from aenet_exp.descriptor import ChebyshevDescriptor, collate_graphs
from aenet_exp.descriptor.derivatives import feature_jacobian
from aenet_exp.descriptor.blocks import FeatureBlock
from aenet_exp.model import ACTIVATIONS, JacobianInputs, Potential, SpeciesNetworks, energy_and_forces, evaluate


def make_potential(species, seed=0, **descriptor_settings) -> Potential:
    torch.manual_seed(seed)
    settings = dict(rad_order=12, rad_cutoff=6.0, ang_order=5, ang_cutoff=4.0) | descriptor_settings
    descriptor = ChebyshevDescriptor(species, **settings, dtype=torch.float64)
    hidden = {s: [8, 6] for s in species}
    activations = {s: ["tanh", "sigmoid"] for s in species}
    potential = Potential(descriptor, hidden, activations)
    potential.set_normalization(energy_shift=-3.0, energy_scale=0.7, atomic_energies={s: -1.0 - k for k, s in enumerate(species)})
    return potential


def finite_difference_forces(potential: Potential, structure: Structure, h: float = 1e-5) -> np.ndarray:
    """Central differences of the energy, −(E(x+h) − E(x−h)) / 2h, per coordinate."""
    graph = potential.descriptor.graph(structure)
    base = graph.positions.clone()
    forces = np.zeros_like(structure.positions)
    with torch.no_grad():
        for atom, axis in np.ndindex(*forces.shape):
            energies = []
            for sign in (1, -1):
                moved = base.clone()
                moved[atom, axis] += sign * h
                energies.append(potential(graph._replace(positions=moved)).item())
            forces[atom, axis] = -(energies[0] - energies[1]) / (2 * h)
    return forces


@pytest.mark.parametrize(
    "relative_path, species",
    [("tio2/structure0407.xsf", ["Ti", "O"]), ("ethanol/ethanol5.xyz", ["C", "H", "O"])],
    ids=["tio2-periodic", "ethanol-molecule"],
)
def test_forces_match_finite_differences(data_dir, relative_path, species):
    structure = read_structures(data_dir / relative_path)[0]
    potential = make_potential(species).eval()
    energy, forces = energy_and_forces(potential, potential.descriptor.graph(structure))
    reference = finite_difference_forces(potential, structure)
    relative_error = np.abs(forces.detach().numpy() - reference).max() / np.abs(reference).max()
    assert relative_error <= 1e-6
    assert energy.shape == (1,)


CASES = pytest.mark.parametrize(
    "relative_path, species",
    [("tio2/structure0407.xsf", ["Ti", "O"]), ("ethanol/ethanol5.xyz", ["C", "H", "O"])],
    ids=["tio2-periodic", "ethanol-molecule"],
)


@CASES
def test_feature_jacobian_equals_autograd(data_dir, relative_path, species):
    structure = read_structures(data_dir / relative_path)[0]
    descriptor = make_potential(species).descriptor
    graph = descriptor.graph(structure).to(dtype=torch.float64)
    jacobian = feature_jacobian(descriptor, graph)
    dense = torch.autograd.functional.jacobian(lambda x: descriptor(graph._replace(positions=x)), graph.positions)
    sparse = torch.zeros_like(dense)  # (n_atoms, n_features, n_atoms, 3)
    sparse[jacobian.center, :, jacobian.atom, :] = jacobian.blocks
    assert torch.allclose(sparse, dense, rtol=0, atol=1e-12 * float(dense.abs().max()))
    assert len(jacobian.center) == len(set(zip(jacobian.center.tolist(), jacobian.atom.tolist())))  # images merged


@CASES
@pytest.mark.parametrize("training", [False, True])
def test_forces_through_cached_jacobian_equal_autograd(data_dir, relative_path, species, training):
    structures = read_structures(data_dir / relative_path)[:1] * 2
    potential = make_potential(species).train(training)
    graph = collate_graphs([potential.descriptor.graph(s) for s in structures]).to(dtype=torch.float64)
    energy, reference = energy_and_forces(potential, graph)
    block = FeatureBlock(potential.descriptor(graph), graph.species, graph.structure, graph.n_structures)
    cached = evaluate(potential, JacobianInputs(block, feature_jacobian(potential.descriptor, graph)), create_graph=training)
    energy_cached, forces = cached.energy, cached.forces
    assert torch.allclose(energy_cached, energy, rtol=1e-14)
    assert torch.allclose(forces, reference, rtol=0, atol=1e-12 * float(reference.detach().abs().max()))
    if training:  # a force loss reaches every species' first-layer weights
        forces.square().sum().backward()
        first_layers = [p for name, p in potential.networks.named_parameters() if name.endswith(".0.weight")]
        assert len(first_layers) == len(species) and all(p.grad.abs().sum() > 0 for p in first_layers)


def test_training_mode_keeps_force_graph_for_a_force_loss(data_dir):
    structure = read_structures(data_dir / "tio2/structure0407.xsf")[0]
    potential = make_potential(["Ti", "O"]).train()
    _, forces = energy_and_forces(potential, potential.descriptor.graph(structure))
    forces.square().sum().backward()
    first_layers = [net[0].weight.grad for net in potential.networks.nets.values()]
    assert all(g is not None and g.abs().sum() > 0 for g in first_layers)


def test_energy_is_sum_of_per_species_network_outputs(data_dir):
    structure = read_structures(data_dir / "tio2/structure0407.xsf")[0]
    potential = make_potential(["Ti", "O"])
    features = potential.descriptor.featurize(structure)
    expected = 0.0
    with torch.no_grad():
        for symbol, row in zip(structure.species, features):
            standardised = (row - potential.feature_mean) / potential.feature_std
            out = potential.networks.nets[symbol](standardised.unsqueeze(0)).item()
            expected += 0.7 * out - 3.0 + {"Ti": -1.0, "O": -2.0}[symbol]
        energy = potential(potential.descriptor.graph(structure)).item()
    assert energy == pytest.approx(expected, rel=1e-12)


def test_batch_energies_and_forces_equal_single_structures(data_dir):
    structures = read_structures(str(data_dir / "tio2" / "*.xsf"))
    potential = make_potential(["Ti", "O"]).eval()
    batch = collate_graphs([potential.descriptor.graph(s) for s in structures])
    energies, forces = energy_and_forces(potential, batch)
    singles = [energy_and_forces(potential, potential.descriptor.graph(s)) for s in structures]
    torch.testing.assert_close(energies, torch.cat([e for e, _ in singles]), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(forces, torch.cat([f for _, f in singles]), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_builds_and_differentiates(name):
    nets = SpeciesNetworks(["H"], 4, {"H": [3]}, {"H": [name]}).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
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
