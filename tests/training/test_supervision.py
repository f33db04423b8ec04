"""force.* (training/supervision.py): which structures are supervised on forces, and the loss (also pooled over a
full batch's parts)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aenet_exp.build.training import run_training
from aenet_exp.config.validation import ConfigError
from aenet_exp.model import Potential
from aenet_exp.model.potential import MODEL_FILE
from aenet_exp.training.bootstrap import BatchWeights
from aenet_exp.training.distributed import Ranks
from aenet_exp.training.supervision import ForceSupervision

from helpers import train


def test_loss_is_weighted_sum_of_pooled_rmses(fast_config, tmp_path):
    cfg = fast_config("force=full", "force.weight=0.3", "precision=float64")
    _, rec = train(cfg, tmp_path)
    model = Potential.load(tmp_path / MODEL_FILE)
    scale = float(model.energy_scale)
    last = rec.epochs[-1]
    expected = (0.7 * last["train/energy_rmse"] + 0.3 * last["train/force_rmse"]) / scale
    assert last["train/loss"] == pytest.approx(expected, rel=1e-12)


def test_force_scale_unbiased_multiplies_force_term(fast_config, tmp_path):
    # A vanishing learning rate keeps both runs on the same weights, so only the loss formula differs.
    base = ["force=subsampled", "force.fraction=0.25", "precision=float64", "iterations=1", "optimizer.mu=1e-30"]
    _, plain = train(fast_config(*base), tmp_path / "a")
    _, scaled = train(fast_config(*base, "force.scale_unbiased=true"), tmp_path / "b")
    p, s = plain.epochs[0], scaled.epochs[0]
    assert s["train/energy_rmse"] == pytest.approx(p["train/energy_rmse"], rel=1e-12)
    scale = float(Potential.load(tmp_path / "a" / MODEL_FILE).energy_scale)
    extra = 0.1 * (math.sqrt(4.0) - 1) * p["train/force_rmse"] / scale
    assert s["train/loss"] - p["train/loss"] == pytest.approx(extra, rel=1e-9)


@pytest.mark.parametrize(
    "fraction, minimum, expected", [(1.0, 1, 10), (0.3, 1, 3), (0.01, 1, 1), (0.01, 4, 4), (0.01, None, 1), (0.5, 20, 10)]
)
def test_force_sampler_size(fraction, minimum, expected):
    sampler = ForceSupervision(0.1, fraction, "random", True, minimum, candidates=np.arange(10), seed=0)
    assert len(sampler.select(0)[0]) == expected


def test_force_sampler_random_fixed_and_windows():
    random = ForceSupervision(0.1, 0.1, "random", True, 1, candidates=np.arange(100), seed=0)
    draws = [random.select(e)[0] for e in range(3)]
    assert draws[0] != draws[1] != draws[2]
    fixed = ForceSupervision(0.1, 0.1, "fixed", True, 1, candidates=np.arange(100), seed=0)
    assert fixed.select(0)[0] == fixed.select(5)[0]
    once = ForceSupervision(0.1, 0.1, "random", False, 1, candidates=np.arange(100), seed=0)
    assert once.select(0)[0] == once.select(9)[0]
    windows = ForceSupervision(0.1, 0.1, "random", True, 1, epochs_per_window=3, candidates=np.arange(100), seed=0)
    picks = [windows.select(e) for e in range(7)]
    assert picks[0][0] == picks[1][0] == picks[2][0] != picks[3][0]
    assert [new for _, new in picks] == [True, False, False, True, False, False, True]


def test_force_fraction_limits_force_supervised_atoms(fast_config, tmp_path):
    # 12 training structures with forces; fraction 0.25 supervises 3 of them per epoch.
    _, full = train(fast_config("force=full", "iterations=1", "precision=float64"), tmp_path / "full")
    _, part = train(fast_config("force=subsampled", "force.fraction=0.25", "iterations=1", "precision=float64"), tmp_path / "p")
    assert full.epochs[0]["train/force_rmse"] != part.epochs[0]["train/force_rmse"]


def test_force_weight_without_forces_is_refused(fast_config, tmp_path, data_dir):
    no_forces = tmp_path / "noforces.xyz"
    lines = (data_dir / "ethanol" / "ethanol5.xyz").read_text().splitlines()
    frames = []
    for k in range(5):
        block = lines[k * 11 : (k + 1) * 11]
        header = block[1].replace(":forces:R:3", "")
        atoms = [" ".join(row.split()[:4]) for row in block[2:]]
        frames += [block[0], header, *atoms]
    no_forces.write_text("\n".join(frames) + "\n")
    iso = data_dir / "ethanol" / "isolated_atoms.xyz"
    with pytest.raises(ConfigError, match="^force.weight: .*no training structure has forces"):
        run_training(fast_config(f"data.path={no_forces}", f"normalization.E_atomic={iso}", "force=full"), tmp_path)



class OneOfTwoRanks(Ranks):
    """Rank 0 of two in one process: the other rank's squared-error totals are ``other``."""

    def __init__(self, other: torch.Tensor):
        super().__init__(0, 2)
        object.__setattr__(self, "other", other)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.add_(self.other)


@pytest.mark.parametrize("weighted", [False, True])
def test_the_ranks_parts_of_a_batch_loss_add_up_to_its_gradient(weighted):
    """Each rank's :meth:`ForceSupervision.batch_loss` of its share (the batch's loss pooled over ranks) has the
    gradient that, summed over ranks, is that of the whole batch's loss."""
    torch.manual_seed(0)
    weight = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)  # a committee of two members
    inputs = torch.randn(7, 3, dtype=torch.float64)
    counts = torch.randint(0, 3, (2, 7)).double() if weighted else None

    def errors(rows):
        x = inputs[rows]
        weights = BatchWeights(counts[:, rows], counts[:, rows].unsqueeze(-1)) if weighted else None
        return weight @ x.T, x * weight[:, None, :], weights  # (members, n), (members, n, 3): one atom each

    supervision = ForceSupervision(0.3, candidates=np.arange(7), seed=0)
    energy, force, weights = errors(slice(None))
    (expected,) = torch.autograd.grad(supervision.batch_loss(energy, force, 0.7, weights), weight)
    shares = [errors(slice(0, 4)), errors(slice(4, 7))]
    totals = [supervision.squares(*share).flat() for share in shares]
    parts = [supervision.batch_loss(*share[:2], 0.7, share[2], OneOfTwoRanks(totals[1 - k]))
             for k, share in enumerate(shares)]
    (got,) = torch.autograd.grad(sum(parts), weight)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("members, weighted", [(1, False), (3, False), (3, True)])
def test_batch_by_batch_gradient_is_the_gradient_of_the_pooled_loss(members, weighted):
    """The parts' losses (:meth:`PooledLoss.part`) add up to the gradient of the loss over all parts; a
    committee's members' losses are summed (each member's weights get the gradient of its own loss), each weighing
    its errors by its own resample's counts with ``committee.bootstrap``."""
    torch.manual_seed(0)
    weight = torch.randn(members, 3, dtype=torch.float64, requires_grad=True)
    inputs = [torch.randn(n, 3, dtype=torch.float64) for n in (4, 7, 2)]
    counts = [torch.randint(0, 3, (members, n)).double() if weighted else None for n in (4, 7, 2)]
    supervision = ForceSupervision(0.3, candidates=torch.arange(3).numpy(), seed=0)
    energy = [weight @ x.T for x in inputs]  # (members, n): one atom per structure
    force = [x * weight[:, None, :] for x in inputs]  # (members, n, 3)
    weights = [BatchWeights(c, c.unsqueeze(-1)) if weighted else None for c in counts]

    def pooled_rmse(errors, k, per_entry):
        squares = torch.cat([e[k].square().reshape(len(e[k]), -1).sum(1) for e in errors])
        w = torch.cat([c[k] for c in counts]) if weighted else torch.ones(len(squares), dtype=torch.float64)
        return ((w * squares).sum() / (per_entry * w.sum())).sqrt()

    pooled = sum(supervision.loss(pooled_rmse(energy, k, 1), pooled_rmse(force, k, 3), 0.7) for k in range(members))
    (expected,) = torch.autograd.grad(pooled, weight, retain_graph=True)
    squares = [supervision.squares(e, f, w) for e, f, w in zip(energy, force, weights)]
    loss = supervision.pooled(sum(part.flat() for part in squares), 0.7)
    parts = sum(loss.part(part.sums) for part in squares)
    (got,) = torch.autograd.grad(parts, weight)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    assert loss.value() == pytest.approx(float(pooled.detach()), rel=1e-12)
