"""The analytic sparse feature Jacobian (descriptor/derivatives.py) equals autograd's dense one."""

from __future__ import annotations

import pytest
import torch

from aenet_exp.data import read_structures
from aenet_exp.descriptor.derivatives import feature_jacobian

from helpers import make_potential

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



def test_forces_through_two_concatenated_jacobians_back_propagate_as_indexing_does(data_dir):
    """``FeatureJacobian.forces`` gathers with ``index_select`` (backward: an ``index_add``): forces and the gradient
    of a force loss w.r.t. ``∂E/∂f`` (the double backward of training) are those of the indexed formula, bit for bit
    with one thread, and the same on every call with several (an indexing's accumulating backward is not)."""
    from aenet_exp.descriptor.derivatives import concat_jacobians

    structure = read_structures(data_dir / "tio2/structure0407.xsf")[0]
    descriptor = make_potential(["Ti", "O"]).descriptor
    graph = descriptor.graph(structure).to(dtype=torch.float32)
    single = feature_jacobian(descriptor, graph)
    n = graph.positions.shape[0]
    jacobian = concat_jacobians([single, single], [n, n])
    assert torch.equal(jacobian.center[len(single.center):], single.center + n)
    gradient = torch.randn(2 * n, descriptor.n_features, generator=torch.Generator().manual_seed(0))

    def backward(forces_of):
        g = gradient.clone().requires_grad_(True)
        forces = forces_of(g)
        (grad,) = torch.autograd.grad(forces.square().sum(), g)
        return forces, grad

    def indexed(g):
        per_entry = torch.einsum("ef,efc->ec", g[jacobian.center], jacobian.blocks)
        return -per_entry.new_zeros(2 * n, 3).index_add_(0, jacobian.atom, per_entry)

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        reference = backward(indexed)
        assert all(torch.equal(a, b) for a, b in zip(backward(lambda g: jacobian.forces(g, 2 * n)), reference))
    finally:
        torch.set_num_threads(threads)
    first = backward(lambda g: jacobian.forces(g, 2 * n))
    assert all(torch.equal(a, b) for _ in range(3) for a, b in zip(backward(lambda g: jacobian.forces(g, 2 * n)), first))
