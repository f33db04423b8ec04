"""python -m aenet_exp export, as a user runs it."""

from __future__ import annotations

import pytest
import torch

from aenet_exp.data import read_structures
from aenet_exp.descriptor import ChebyshevDescriptor, collate_graphs
from aenet_exp.export import read_aenet_ascii
from aenet_exp.model import Potential, energy_and_forces

from conftest import FAST, SMALL, run_cli

pytestmark = pytest.mark.slow


def batch(potential, structures):
    return collate_graphs([potential.descriptor.graph(s) for s in structures]).to(dtype=torch.float64)


def make_potential(structures, hidden, activations, seed=0, **basis) -> Potential:
    """Random float64 weights; feature and energy normalisation far from identity."""
    torch.manual_seed(seed)
    settings = dict(rad_order=6, rad_cutoff=5.0, ang_order=3, ang_cutoff=3.5) | basis
    descriptor = ChebyshevDescriptor(SPECIES, **settings, dtype=torch.float64)
    potential = Potential(descriptor, hidden, activations)
    with torch.no_grad():
        features = descriptor(collate_graphs([descriptor.graph(s) for s in structures]))
        for parameter in potential.networks.parameters():
            parameter.normal_(0.0, 0.4)
    potential.set_normalization(
        feature_mean=features.mean(0) + 0.1,
        feature_std=features.std(0) * 1.3 + 0.05,
        energy_shift=-5.3,
        energy_scale=0.37,
        atomic_energies={"O": -432.5, "Ti": -1604.625},  # exact in float32: set_normalization rounds through it
    )
    return potential.eval()


def assert_same_predictions(original, read_back, structures):
    graph = batch(original, structures)
    energy, forces = energy_and_forces(original, graph)
    energy_read, forces_read = energy_and_forces(read_back, graph)
    assert torch.all((energy_read - energy).abs() <= 1e-10 * energy.abs())
    assert (forces_read - forces).abs().max() <= 1e-10 * forces.abs().max()


@pytest.fixture(scope="module")
def potential(structures):
    """Different architectures per species: O two hidden layers, Ti one."""
    return make_potential(structures, {"O": [6, 5], "Ti": [4]}, {"O": ["tanh", "sigmoid"], "Ti": ["mtanh"]})


@pytest.fixture(scope="module")
def structures():
    return [read_structures(path)[0] for path in sorted(SMALL.glob("*.xsf"))[:5]]


SPECIES = ["O", "Ti"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = run_cli("train", *FAST, "tracking.enabled=false", f"hydra.run.dir={run_dir}", cwd=run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir


def test_cli_exports_a_trained_run(trained_run, structures):
    result = run_cli("export", f"run={trained_run}", "format=aenet", cwd=trained_run)
    assert result.returncode == 0, result.stderr
    written = [trained_run / "aenet" / f"{s}.pytorch.nn.ascii" for s in SPECIES]
    assert result.stdout.split() == [str(p) for p in written]
    trained = Potential.load(trained_run / "potential.pt").astype(torch.float64).eval()
    assert_same_predictions(trained, read_aenet_ascii(trained_run / "aenet"), structures)


def test_cli_refuses_an_unknown_format(trained_run):
    result = run_cli("export", f"run={trained_run}", "format=lammps", cwd=trained_run)
    assert result.returncode == 2
    assert result.stderr.strip() == "aenet_exp: error: format: expected one of ['aenet'], got 'lammps'"

