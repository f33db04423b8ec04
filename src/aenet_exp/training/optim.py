"""``optimizer.*``: one builder per optimizer group option, keyed by the option (``optimizer.name``).

The optimizers update the network weights only (descriptor and normalisation are fixed). How the
trainer steps each is :data:`STEPS`: a gradient step per batch, a full-batch step per epoch
(L-BFGS), or a Kalman update per batch from the batch's measurements (EKF).
``foreach``: one fused update over all (many, small) weight tensors, also on CPU, where torch
would otherwise update them one by one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from aenet_exp.training.kalman import KalmanFilter

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


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": adam, "adamw": adamw, "sgd": sgd, "lbfgs": lbfgs, "ekf": ekf,
}
# How the trainer steps an optimizer: "gradient" (a step per batch on its loss's gradient), "full_batch" (one
# step per epoch on the whole training set's loss) or "kalman" (an update per batch from its measurements).
STEPS = {"lbfgs": "full_batch", "ekf": "kalman"}
WITHOUT_DECAY = ("lbfgs", "ekf")  # validation refuses weight_decay with them


def build_optimizer(
    networks: Networks, name: str, batchsize: int | None = None, weight_decay: float = 0.0,
    force_measurements: int | None = None, **hyperparameters,
) -> torch.optim.Optimizer:
    """The optimizer of the ``optimizer`` group option ``name`` with its keys as ``hyperparameters``, over the
    weights of ``networks`` (``batchsize`` and the EKF's ``force_measurements`` are the trainer's)."""
    if name not in WITHOUT_DECAY:
        hyperparameters["weight_decay"] = weight_decay
    return OPTIMIZERS[name](networks, **hyperparameters)


def step_kind(name: str) -> str:
    """How the trainer steps the optimizer ``name`` (:data:`STEPS`)."""
    return STEPS.get(name, "gradient")
