"""optimizer.* (training/optim.py): every key reaches the torch optimizer."""

from __future__ import annotations

import pytest
import torch

from aenet_exp.training.optim import build_optimizer


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
    from omegaconf import OmegaConf

    from aenet_exp.build.training import build_potential

    networks = build_potential(cfg, ["O", "Ti"], torch.float64).networks.nets
    optimizer = build_optimizer(networks, **OmegaConf.to_container(cfg.optimizer))
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    for key, value in expected.items():
        assert group[key] == pytest.approx(value), key

