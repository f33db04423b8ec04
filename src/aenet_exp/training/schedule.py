"""What changes between steps and epochs: the learning-rate schedule (``scheduler.*``) and the averaged weights (``ema.*``)."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, ReduceLROnPlateau
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def constant(optimizer: torch.optim.Optimizer, epochs: int, **_) -> None:
    """No schedule after the warm-up."""
    return None


def cosine(optimizer: torch.optim.Optimizer, epochs: int, min_lr: float, **_) -> CosineAnnealingLR:
    """Cosine decay to ``min_lr`` over ``epochs``."""
    return CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)


def plateau(
    optimizer: torch.optim.Optimizer, epochs: int, factor: float, patience: int, threshold: float, min_lr: float, **_
) -> ReduceLROnPlateau:
    """Multiply by ``factor`` after ``patience`` epochs without a relative improvement of ``threshold``."""
    return ReduceLROnPlateau(optimizer, factor=factor, patience=patience, threshold=threshold, min_lr=min_lr)


# The scheduler group's options (schema.SCHEDULERS), by choice; each takes the keys it uses.
SCHEDULES = {"none": constant, "cosine": cosine, "plateau": plateau}


class EpochSchedule:
    """``scheduler.*``: linear warm-up for ``warmup_epochs``, then the schedule ``name``.

    Stepped once per epoch with that epoch's metrics (plateau watches ``metric``).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        epochs: int,
        name: str = "none",
        warmup_epochs: int = 0,
        warmup_start_factor: float = 0.1,
        metric: str = "test/loss",
        **schedule_keys,
    ):
        self.warmup_epochs = warmup_epochs
        self.metric = metric
        self.warmup = (
            LinearLR(optimizer, start_factor=warmup_start_factor, end_factor=1.0, total_iters=warmup_epochs)
            if warmup_epochs > 0
            else None
        )
        self.decay_epochs = max(epochs - warmup_epochs, 1)
        self.main = SCHEDULES[name](optimizer, self.decay_epochs, **schedule_keys)
        self.optimizer = optimizer
        self.epochs_done = 0

    def learning_rate(self) -> float | None:
        """The learning rate of this epoch; None for an optimizer without one (the Kalman filter)."""
        rate = self.optimizer.param_groups[0].get("lr")
        return None if rate is None else float(rate)

    def step(self, metrics: dict[str, float]) -> None:
        """Advance by one finished epoch."""
        self.epochs_done += 1
        if self.warmup is not None and self.epochs_done <= self.warmup_epochs:
            self.warmup.step()
        elif isinstance(self.main, ReduceLROnPlateau):
            self.main.step(metrics[self.metric])
        elif self.main is not None:
            self.main.step()

    def state_dict(self) -> dict:
        parts = {"warmup": self.warmup, "main": self.main}
        return {"epochs_done": self.epochs_done, **{k: v.state_dict() for k, v in parts.items() if v is not None}}

    def load_state_dict(self, state: dict) -> None:
        """Continue a schedule; a cosine decay is stretched to end at this run's last epoch (resume with more)."""
        self.epochs_done = state["epochs_done"]
        for key, part in (("warmup", self.warmup), ("main", self.main)):
            if part is not None:
                part.load_state_dict(state[key])
        if isinstance(self.main, CosineAnnealingLR):
            self.main.T_max = self.decay_epochs


class WeightAverage:
    """``ema.decay``: an exponential moving average of the weights (torch's ``AveragedModel``)."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = model
        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    def update(self) -> None:
        """Fold the current weights in (after each optimiser step)."""
        self.average.update_parameters(self.model)

    def weights(self) -> dict[str, torch.Tensor]:
        """The averaged weights, as a state dict of the model."""
        return self.average.module.state_dict()

    @contextmanager
    def applied(self):
        """The model carries the averaged weights inside the block and its own weights again after it."""
        own = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(self.weights())
        try:
            yield
        finally:
            self.model.load_state_dict(own)

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)
