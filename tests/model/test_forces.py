"""The one force path (model/forces.py): forces against finite differences, cached Jacobians equal to autograd,
forces that training can differentiate again (gradcheck and gradgradcheck in float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from aenet_exp.data import Structure, read_structures
from aenet_exp.descriptor import ChebyshevDescriptor, collate_graphs
from aenet_exp.descriptor.blocks import FeatureBlock
from aenet_exp.descriptor.derivatives import feature_jacobian
from aenet_exp.model import GraphInputs, JacobianInputs, Potential, energy_and_forces, evaluate

from helpers import make_potential


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


def test_batch_energies_and_forces_equal_single_structures(data_dir):
    structures = read_structures(str(data_dir / "tio2" / "*.xsf"))
    potential = make_potential(["Ti", "O"]).eval()
    batch = collate_graphs([potential.descriptor.graph(s) for s in structures])
    energies, forces = energy_and_forces(potential, batch)
    singles = [energy_and_forces(potential, potential.descriptor.graph(s)) for s in structures]
    torch.testing.assert_close(energies, torch.cat([e for e, _ in singles]), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(forces, torch.cat([f for _, f in singles]), rtol=1e-12, atol=1e-10)


def tiny_potential() -> Potential:
    """Two species, 8 features, one hidden layer of 3: small enough for numerical third derivatives."""
    torch.manual_seed(5)
    descriptor = ChebyshevDescriptor(["H", "O"], rad_order=2, rad_cutoff=3.0, ang_order=1, ang_cutoff=2.5)
    potential = Potential(descriptor, {"H": [3], "O": [3]}, {"H": ["tanh"], "O": ["tanh"]})
    potential.set_normalization(energy_shift=-0.5, energy_scale=0.8, atomic_energies={"H": -13.6, "O": -2035.0})
    return potential.double()


class Forces(nn.Module):
    """Forces ``(n_atoms, 3)`` of a fixed geometry as a function of the potential's weights, as training uses them."""

    def __init__(self, potential: Potential, graph, cached: bool):
        super().__init__()
        self.potential, self.graph, self.cached = potential, graph, cached

    def forward(self) -> torch.Tensor:
        descriptor = self.potential.descriptor
        if self.cached:
            block = FeatureBlock(descriptor(self.graph).detach(), self.graph.species, self.graph.structure, 1)
            inputs = JacobianInputs(block, feature_jacobian(descriptor, self.graph))
        else:
            inputs = GraphInputs(descriptor, self.graph)
        return evaluate(self.potential, inputs, create_graph=True, normalized=True).forces


@pytest.mark.parametrize("cached", [False, True], ids=["autograd", "jacobian"])
def test_force_loss_gradients_are_exact_to_second_order(data_dir, cached):
    """gradcheck and gradgradcheck (float64) of the forces w.r.t. a first-layer weight matrix: the force
    loss's gradient (create_graph) and its own derivative match finite differences."""
    water = read_structures(data_dir / "chebyshev" / "water.xyz")[0]
    potential = tiny_potential().train()
    forces = Forces(potential, potential.descriptor.graph(water).to(dtype=torch.float64), cached)
    name = "potential.networks.nets.O.0.weight"
    weight = dict(forces.named_parameters())[name].detach().clone().requires_grad_(True)

    def of_weight(w: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(forces, {name: w}, ())

    assert torch.autograd.gradcheck(of_weight, (weight,))
    assert torch.autograd.gradgradcheck(of_weight, (weight,))


def test_both_inputs_give_the_same_normalized_energies_and_forces(data_dir):
    water = read_structures(data_dir / "chebyshev" / "water.xyz")[0]
    potential = tiny_potential().eval()
    graph = potential.descriptor.graph(water).to(dtype=torch.float64)
    autograd = evaluate(potential, GraphInputs(potential.descriptor, graph), normalized=True)
    block = FeatureBlock(potential.descriptor(graph).detach(), graph.species, graph.structure, 1)
    cached = evaluate(potential, JacobianInputs(block, feature_jacobian(potential.descriptor, graph)), normalized=True)
    torch.testing.assert_close(cached.energy, autograd.energy, rtol=1e-14, atol=0)
    torch.testing.assert_close(cached.forces, autograd.forces, rtol=0, atol=1e-12)
    total = evaluate(potential, GraphInputs(potential.descriptor, graph))
    expected = float(potential.energy_scale) * autograd.energy + 3 * float(potential.energy_shift) + (-2035.0 - 2 * 13.6)
    torch.testing.assert_close(total.energy, expected, rtol=1e-14, atol=0)
    assert total.atom_energies.shape == (1, 3) and autograd.atom_energies is None
