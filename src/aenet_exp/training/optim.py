"""``optimizer.*``: one builder per optimizer group option, keyed by the option (``optimizer.name``).

The optimizers update the network weights only (descriptor and normalisation are fixed). Each option
comes with the strategy that steps it through an epoch (:mod:`aenet_exp.training.steps`): a gradient
step per batch, a full-batch step per epoch (L-BFGS), or a Kalman update per batch from the batch's
measurements (EKF); :func:`plan_optimizer` builds both, with the batch size, as an :class:`OptimizerPlan`.
``foreach``: one fused update over all (many, small) weight tensors, also on CPU, where torch
would otherwise update them one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from aenet_exp.training.kalman import KalmanFilter
from aenet_exp.training.steps import FullBatchStep, GradientSteps, KalmanUpdates, StepStrategy

Networks = torch.nn.ModuleDict  # the per-species networks, by symbol


def adam(networks: Networks, mu: float, beta1: float, beta2: float, epsilon: float, weight_decay: float):
    return torch.optim.Adam(networks.parameters(), lr=mu, betas=(beta1, beta2), eps=epsilon, weight_decay=weight_decay, foreach=True)


def adamw(networks: Networks, mu: float, beta1: float, beta2: float, epsilon: float, weight_decay: float):
    return torch.optim.AdamW(networks.parameters(), lr=mu, betas=(beta1, beta2), eps=epsilon, weight_decay=weight_decay, foreach=True)


def sgd(networks: Networks, lr: float, momentum: float, weight_decay: float):
    return torch.optim.SGD(networks.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=True)


def lbfgs(networks: Networks, lr: float, max_iter: int, history_size: int, tolerance_grad: float,
          tolerance_change: float):
    """Full-batch L-BFGS with a strong-Wolfe line search (``max_iter`` iterations per epoch)."""
    return torch.optim.LBFGS(networks.parameters(), lr=lr, max_iter=max_iter, history_size=history_size,
                             tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                             line_search_fn="strong_wolfe")


def ekf(networks: Networks, lambda0: float, nue: float, p0: float, process_noise: float, blocks: str):
    """Extended Kalman filter with a covariance block per species' network or per layer (``blocks``)."""
    if blocks == "species":
        groups = [list(net.parameters()) for net in networks.values()]
    else:
        groups = [params for net in networks.values() for layer in net if (params := list(layer.parameters()))]
    return KalmanFilter(groups, lambda0=lambda0, nue=nue, p0=p0, process_noise=process_noise)


@dataclass(frozen=True)
class OptimizerOption:
    """An ``optimizer`` group option: its optimiser's builder (from the option's hyperparameters) and the step
    strategy that drives it (from the optimiser and the option's ``step_keys``)."""

    build: Callable[..., torch.optim.Optimizer]
    steps: Callable[..., StepStrategy] = GradientSteps
    step_keys: tuple[str, ...] = ()
    decays: bool = True  # takes ``weight_decay`` (validation refuses it with the others)


OPTIMIZERS: dict[str, OptimizerOption] = {
    "adam": OptimizerOption(adam), "adamw": OptimizerOption(adamw), "sgd": OptimizerOption(sgd),
    "lbfgs": OptimizerOption(lbfgs, FullBatchStep, decays=False),
    "ekf": OptimizerOption(ekf, KalmanUpdates, step_keys=("force_measurements",), decays=False),
}


@dataclass(frozen=True)
class OptimizerPlan:
    """How the network weights are optimised: the torch optimiser, the strategy stepping it through each epoch,
    and the structures per planned batch."""

    optimizer: torch.optim.Optimizer
    steps: StepStrategy
    batchsize: int


def plan_optimizer(networks: Networks, name: str, batchsize: int, weight_decay: float = 0.0, **keys) -> OptimizerPlan:
    """The optimiser of the ``optimizer`` group option ``name`` over the weights of ``networks``, with its step
    strategy: ``keys`` are the option's keys (its hyperparameters, and the strategy's ``step_keys``)."""
    option = OPTIMIZERS[name]
    step_keys = {key: keys.pop(key) for key in option.step_keys}
    if option.decays:
        keys["weight_decay"] = weight_decay
    optimizer = option.build(networks, **keys)
    return OptimizerPlan(optimizer, option.steps(optimizer, **step_keys), batchsize)
