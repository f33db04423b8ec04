"""The analytic sparse feature Jacobian (descriptor/derivatives.py) equals autograd's dense one."""

from __future__ import annotations

import pytest
import torch

from aenet_exp.data import read_structures
from aenet_exp.descriptor.derivatives import feature_jacobian

from conftest import make_potential

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

