"""optimizer.* (training/optim.py): every key reaches the torch optimizer, and each option comes with its step
strategy and batch size."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from aenet_exp.build.training import build_potential
from aenet_exp.training.kalman import KalmanFilter
from aenet_exp.training.optim import plan_optimizer
from aenet_exp.training.steps import FullBatchStep, GradientSteps, KalmanUpdates


@pytest.mark.parametrize(
    "name, cls, expected",
    [
        ("adam", torch.optim.Adam, dict(lr=0.002, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01)),
        ("adamw", torch.optim.AdamW, dict(lr=0.002, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01)),
        ("sgd", torch.optim.SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.01)),
    ],
)
def test_optimizer_parameters_reach_torch(fast_config, name, cls, expected):
    extra = (
        ["optimizer.lr=0.05", "optimizer.momentum=0.5"]
        if name == "sgd"
        else ["optimizer.mu=0.002", "optimizer.beta1=0.8", "optimizer.beta2=0.99", "optimizer.epsilon=1e-7"]
    )
    cfg = fast_config(f"optimizer={name}", "optimizer.weight_decay=0.01", *extra)
    networks = build_potential(cfg, ["O", "Ti"], torch.float64).networks.nets
    optimizer = plan_optimizer(networks, **OmegaConf.to_container(cfg.optimizer)).optimizer
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    for key, value in expected.items():
        assert group[key] == pytest.approx(value), key


@pytest.mark.parametrize(
    "name, optimizer, steps",
    [("adam", torch.optim.Adam, GradientSteps), ("adamw", torch.optim.AdamW, GradientSteps),
     ("sgd", torch.optim.SGD, GradientSteps), ("lbfgs", torch.optim.LBFGS, FullBatchStep),
     ("ekf", KalmanFilter, KalmanUpdates)],
)
def test_each_option_is_planned_with_its_step_strategy_and_batch_size(fast_config, name, optimizer, steps):
    cfg = fast_config(f"optimizer={name}", "optimizer.batchsize=7")
    networks = build_potential(cfg, ["O", "Ti"], torch.float64).networks.nets
    plan = plan_optimizer(networks, **OmegaConf.to_container(cfg.optimizer))
    assert type(plan.optimizer) is optimizer and type(plan.steps) is steps and plan.batchsize == 7
    assert plan.steps.optimizer is plan.optimizer


def test_the_kalman_updates_take_the_force_measurements_of_the_group(fast_config):
    cfg = fast_config("optimizer=ekf", "optimizer.force_measurements=3")
    networks = build_potential(cfg, ["O", "Ti"], torch.float64).networks.nets
    assert plan_optimizer(networks, **OmegaConf.to_container(cfg.optimizer)).steps.force_measurements == 3
