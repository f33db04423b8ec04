"""A trainer without descriptor graphs: a tiny potential whose structures' features are fixed random numbers.

:class:`HandMadeSource` stands in for :class:`~aenet_exp.training.features.FeatureSource`: each structure has
fixed features ``(n_atoms, 4)``, a fixed Jacobian of each atom's features with respect to its own position
``(n_atoms, 4, 3)`` and reference forces; energies and forces come from the potential's networks on them, the
forces through autograd as in :func:`aenet_exp.model.forces.evaluate`. :func:`handmade_trainer` builds a
:class:`~aenet_exp.training.trainer.Trainer` over ten such structures (eight to train on, two to test).
"""

from __future__ import annotations

import numpy as np
import torch

from aenet_exp.descriptor import ChebyshevDescriptor
from aenet_exp.evaluation.predictions import BatchOutput
from aenet_exp.model import Potential
from aenet_exp.training.bootstrap import MemberWeights
from aenet_exp.training.columns import Columns
from aenet_exp.training.optim import plan_optimizer
from aenet_exp.training.sampling import EpochSampling
from aenet_exp.training.schedule import EpochSchedule, WeightAverage
from aenet_exp.training.supervision import ForceSupervision
from aenet_exp.training.timing import PhaseTimer
from aenet_exp.training.trainer import Runtime, Trainer, TrainingData

N_ATOMS = np.array([1, 2, 3, 2, 1, 3, 2, 2, 1, 3])
TRAIN, TEST = np.arange(8), np.array([8, 9])
ENERGY_SHIFT, ENERGY_SCALE = -0.5, 2.0  # eV/atom: the potential's normalisation
CPU = torch.device("cpu")


class HandMadeSource:
    """Batch outputs of fixed per-structure features; remembers each batch it was asked for (``asked``)."""

    def __init__(self, n_atoms: np.ndarray, n_features: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)

        def random(*shape):
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        self.features = [random(n, n_features) for n in n_atoms]
        self.jacobians = [random(n, n_features, 3) for n in n_atoms]
        self.reference_forces = [random(n, 3) for n in n_atoms]
        self.asked: list[list[int]] = []

    def outputs(self, potential: Potential, plan: list[np.ndarray], force_set: frozenset[int], create_graph: bool):
        for batch in plan:
            yield batch, (self.output(potential, [int(i) for i in batch], force_set, create_graph) if len(batch) else None)

    def output(self, potential: Potential, batch: list[int], force_set: frozenset[int], create_graph: bool) -> BatchOutput:
        """The batch's normalised energies ``(members, n)`` and forces ``(members, n_force_atoms, 3)`` eV/Å, its
        structures supervised on forces first."""
        self.asked.append(batch)
        force_indices = [i for i in batch if i in force_set]
        order = force_indices + [i for i in batch if i not in force_set]
        counts = torch.tensor([len(self.features[i]) for i in order])
        with torch.enable_grad():
            features = potential.member_features(torch.cat([self.features[i] for i in order]).requires_grad_())
            species = torch.zeros(int(counts.sum()), dtype=torch.long)
            structure = torch.repeat_interleave(torch.arange(len(order)), counts)
            energies = potential.normalized_energy(features, species, structure, len(order))
            if not force_indices:
                return BatchOutput(order, energies, [], None, None)
            (gradient,) = torch.autograd.grad((potential.energy_scale * energies).sum(), features, create_graph=create_graph)
        n_force_atoms = int(counts[: len(force_indices)].sum())
        jacobian = torch.cat([self.jacobians[i] for i in force_indices])
        forces = -torch.einsum("maf,afc->mac", gradient[:, :n_force_atoms], jacobian)
        return BatchOutput(order, energies, force_indices, forces, torch.cat([self.reference_forces[i] for i in force_indices]))

    def forget_features(self, indices: frozenset[int]) -> None:
        """Nothing is kept."""

    def memory_metrics(self) -> dict[str, float]:
        return {}


def handmade_columns(seed: int = 0) -> Columns:
    """The ten structures' facts: random total energies (eV), every structure with forces."""
    energy = np.random.default_rng(seed).normal(-1.0, 0.3, len(N_ATOMS)) * N_ATOMS
    return Columns(energy=energy, n_atoms=N_ATOMS, has_forces=np.ones(len(N_ATOMS), dtype=bool),
                   max_abs_force=np.ones(len(N_ATOMS)), species=("H",), composition=N_ATOMS[:, None])


def handmade_potential(members: int = 1) -> Potential:
    """One species, 4 features, a hidden layer of 3; shift and scale as :data:`ENERGY_SHIFT`, :data:`ENERGY_SCALE`."""
    descriptor = ChebyshevDescriptor(["H"], rad_order=1, rad_cutoff=3.0, ang_order=1, ang_cutoff=2.0)
    potential = Potential(descriptor, {"H": [3]}, {"H": ["tanh"]}, members=members, seeds=list(range(members)))
    potential.set_normalization(energy_shift=ENERGY_SHIFT, energy_scale=ENERGY_SCALE)
    return potential


def handmade_trainer(
    optimizer: str = "sgd", batchsize: int = 3, force_weight: float = 0.3, force_fraction: float = 1.0,
    members: int = 1, ema: float | None = None, bootstrap: bool = False, **optimizer_keys,
) -> Trainer:
    """A trainer of :func:`handmade_potential` on :class:`HandMadeSource`, its targets set (no normalisation fit)."""
    potential = handmade_potential(members)
    source = HandMadeSource(N_ATOMS, potential.descriptor.n_features)
    columns = handmade_columns()
    supervision = ForceSupervision(force_weight, force_fraction, candidates=TRAIN, seed=1)
    sampling = EpochSampling("uniform", TRAIN, columns.energy / N_ATOMS, np.random.default_rng(2))
    plan = plan_optimizer(potential.networks.nets, optimizer, batchsize, **optimizer_keys)
    trainer = Trainer(
        potential, TrainingData(columns, TRAIN, TEST), source, supervision, sampling, plan,
        EpochSchedule(plan.optimizer, 10), Runtime(CPU, CPU, PhaseTimer(False, CPU)),
        average=WeightAverage(potential, ema) if ema is not None else None,
        member_weights=MemberWeights(TRAIN, N_ATOMS, list(range(members)), CPU, torch.float64) if bootstrap else None,
    )
    trainer.set_targets(None)
    return trainer


def hand_loss(potential: Potential, source: HandMadeSource, columns: Columns, batch: list[int], alpha: float):
    """``(1 − α)·RMSE(E/atom)/scale + α·RMSE(F)/scale`` of ``batch`` (every structure supervised on forces),
    written out from the outputs and the reference energies."""
    output = source.output(potential, batch, frozenset(batch), create_graph=True)
    n_atoms = torch.as_tensor(N_ATOMS[output.order], dtype=torch.float64)
    reference = torch.as_tensor(columns.energy[output.order]) / n_atoms
    energy_error = ENERGY_SCALE * output.energies[0] / n_atoms + ENERGY_SHIFT - reference
    force_error = output.forces[0] - output.reference_forces
    rmse_e, rmse_f = energy_error.square().mean().sqrt(), force_error.square().mean().sqrt()
    return ((1 - alpha) * rmse_e + alpha * rmse_f) / ENERGY_SCALE
