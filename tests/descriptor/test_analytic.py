"""Inference without autograd (descriptor/analytic.py): moment-form features equal the triplet sums, and forces and
the strain derivative from the analytic pair gradients equal autograd's, for one potential and a committee."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aenet_exp.data import Structure, read_structures
from aenet_exp.descriptor import ChebyshevDescriptor
from aenet_exp.descriptor.analytic import AnalyticFeatures, chebyshev_by_angle, chebyshev_coefficients
from aenet_exp.descriptor.terms import chebyshev, chebyshev_derivative
from aenet_exp.model import Potential
from aenet_exp.model.forces import AnalyticInputs, GraphInputs, evaluate

from helpers import make_potential


def isolated_atom_and_dimer() -> Structure:
    """An O atom 9 Å from a bonded Ti–O pair: one centre without any neighbour."""
    return Structure(["O", "Ti", "O"], [[0.0, 0.0, 0.0], [9.0, 0.0, 0.0], [10.8, 0.4, 0.0]])


def structures(data_dir):
    return {
        "tio2-periodic": (read_structures(data_dir / "tio2/structure0407.xsf")[0], ["O", "Ti"]),
        "ethanol-molecule": (read_structures(data_dir / "ethanol/ethanol5.xyz")[0], ["C", "H", "O"]),
        "water-one-species-order": (read_structures(data_dir / "chebyshev/water.xyz")[0], ["O", "H"]),
        "isolated-atom": (isolated_atom_and_dimer(), ["O", "Ti"]),
    }


CASES = ["tio2-periodic", "ethanol-molecule", "water-one-species-order", "isolated-atom"]


@pytest.mark.parametrize("case", CASES)
def test_moment_features_equal_the_triplet_sums(data_dir, case):
    structure, species = structures(data_dir)[case]
    descriptor = ChebyshevDescriptor(species, rad_order=10, rad_cutoff=6.0, ang_order=6, ang_cutoff=4.0, dtype=torch.float64)
    graph = descriptor.graph(structure).to(dtype=torch.float64)
    expected = descriptor(graph)
    torch.testing.assert_close(AnalyticFeatures(descriptor, graph).features, expected, rtol=0,
                               atol=1e-12 * max(1.0, float(expected.abs().max())))


def test_a_single_species_descriptor_has_no_spin_channel():
    structure = Structure(["Cu"] * 3, [[0, 0, 0], [2.5, 0, 0], [0.3, 2.4, 0.1]])
    descriptor = ChebyshevDescriptor(["Cu"], rad_order=5, rad_cutoff=4.0, ang_order=3, ang_cutoff=3.5, dtype=torch.float64)
    graph = descriptor.graph(structure).to(dtype=torch.float64)
    torch.testing.assert_close(AnalyticFeatures(descriptor, graph).features, descriptor(graph), rtol=0, atol=1e-13)


def committee_of(potential: Potential, members: int) -> Potential:
    committee = Potential(potential.descriptor, potential.architecture["hidden"], potential.architecture["activations"],
                          members=members, seeds=list(range(members)))
    normalisation = {k: v for k, v in potential.state_dict().items() if not k.startswith("networks")}
    committee.load_state_dict({**committee.state_dict(), **normalisation})
    return committee


@pytest.mark.parametrize("members", [1, 3], ids=["single", "committee"])
@pytest.mark.parametrize("case", CASES)
def test_analytic_forces_and_strain_equal_autograd(data_dir, case, members):
    structure, species = structures(data_dir)[case]
    potential = committee_of(make_potential(species), members)
    graph = potential.descriptor.graph(structure).to(dtype=torch.float64)
    strain = structure.is_periodic
    expected = evaluate(potential, GraphInputs(potential.descriptor, graph, strain=strain))
    got = evaluate(potential, AnalyticInputs(potential.descriptor, graph, strain=strain))
    torch.testing.assert_close(got.energy, expected.energy, rtol=0, atol=1e-10)
    torch.testing.assert_close(got.forces, expected.forces, rtol=0, atol=1e-10)
    assert float(expected.forces.abs().max()) > 1e-3  # forces that say something
    if strain:
        torch.testing.assert_close(got.strain_derivative, expected.strain_derivative, rtol=0, atol=1e-10)


def test_analytic_inputs_refuse_a_force_loss(data_dir):
    structure, species = structures(data_dir)["tio2-periodic"]
    potential = make_potential(species)
    inputs = AnalyticInputs(potential.descriptor, potential.descriptor.graph(structure).to(dtype=torch.float64))
    with pytest.raises(ValueError, match="for inference"):
        evaluate(potential, inputs, create_graph=True)


def test_chebyshev_by_angle_equals_the_recurrence():
    x = torch.cat([torch.linspace(-1.0, 1.0, 2001, dtype=torch.float64), torch.tensor([1.0, -1.0, 1.0 - 1e-12])])
    values, slopes = chebyshev_by_angle(x, 20)
    torch.testing.assert_close(values, chebyshev(x, 20), rtol=0, atol=1e-12)
    torch.testing.assert_close(slopes, chebyshev_derivative(x, 20), rtol=0, atol=1e-9 * 400)  # |T_20'| ≤ 400


def test_chebyshev_coefficients_reproduce_the_polynomials():
    x = np.linspace(-1, 1, 101)
    table = chebyshev_coefficients(6)
    powers = np.stack([x**m for m in range(7)], axis=1)
    np.testing.assert_allclose(powers @ table.T, chebyshev(torch.from_numpy(x), 6).numpy(), atol=1e-12)
