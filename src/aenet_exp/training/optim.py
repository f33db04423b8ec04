"""``optimizer.*``: one builder per optimizer group option, keyed by the option (``optimizer.name``).

The optimizers update the network weights only (descriptor and normalisation are fixed).
``foreach``: one fused update over all (many, small) weight tensors, also on CPU, where torch
would otherwise update them one by one. ``batchsize`` is the group's too, but the trainer's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

Parameters = Iterable[torch.nn.Parameter]


def adam(params: Parameters, mu: float, beta1: float, beta2: float, epsilon: float, weight_decay: float):
    return torch.optim.Adam(params, lr=mu, betas=(beta1, beta2), eps=epsilon, weight_decay=weight_decay, foreach=True)


def adamw(params: Parameters, mu: float, beta1: float, beta2: float, epsilon: float, weight_decay: float):
    return torch.optim.AdamW(params, lr=mu, betas=(beta1, beta2), eps=epsilon, weight_decay=weight_decay, foreach=True)


def sgd(params: Parameters, lr: float, momentum: float, weight_decay: float):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=True)


def lbfgs(params: Parameters, lr: float, max_iter: int, history_size: int, tolerance_grad: float,
          tolerance_change: float):
    """Full-batch L-BFGS with a strong-Wolfe line search (``max_iter`` iterations per epoch)."""
    return torch.optim.LBFGS(params, lr=lr, max_iter=max_iter, history_size=history_size,
                             tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                             line_search_fn="strong_wolfe")


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adam": adam, "adamw": adamw, "sgd": sgd, "lbfgs": lbfgs}
FULL_BATCH = ("lbfgs",)  # one step per epoch on the whole training set's loss


def build_optimizer(
    params: Parameters, name: str, batchsize: int | None = None, weight_decay: float = 0.0, **hyperparameters
) -> torch.optim.Optimizer:
    """The optimizer of the ``optimizer`` group option ``name`` with its keys as ``hyperparameters``."""
    if name in FULL_BATCH:  # no decay term in torch's L-BFGS (validation refuses weight_decay with it)
        return OPTIMIZERS[name](params, **hyperparameters)
    return OPTIMIZERS[name](params, weight_decay=weight_decay, **hyperparameters)
