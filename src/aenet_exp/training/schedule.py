"""What changes between epochs: the learning-rate schedule, early stopping, and the averaged weights."""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, ReduceLROnPlateau
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EpochSchedule:
    """``scheduler.*``: linear warm-up for ``warmup_epochs``, then cosine decay or reduce-on-plateau.

    Stepped once per epoch with that epoch's metrics (plateau watches ``scheduler.metric``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg, epochs: int):
        self.cfg = cfg
        self.warmup = (
            LinearLR(optimizer, start_factor=cfg.warmup_start_factor, end_factor=1.0, total_iters=cfg.warmup_epochs)
            if cfg.warmup_epochs > 0
            else None
        )
        self.decay_epochs = max(epochs - cfg.warmup_epochs, 1)
        self.main = {
            "none": lambda: None,
            "cosine": lambda: CosineAnnealingLR(optimizer, T_max=self.decay_epochs, eta_min=cfg.min_lr),
            "plateau": lambda: ReduceLROnPlateau(
                optimizer, factor=cfg.factor, patience=cfg.patience, threshold=cfg.threshold, min_lr=cfg.min_lr
            ),
        }[cfg.name]()
        self.optimizer = optimizer
        self.epochs_done = 0

    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, metrics: dict[str, float]) -> None:
        """Advance by one finished epoch."""
        self.epochs_done += 1
        if self.warmup is not None and self.epochs_done <= self.cfg.warmup_epochs:
            self.warmup.step()
        elif isinstance(self.main, ReduceLROnPlateau):
            self.main.step(metrics[self.cfg.metric])
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


class EarlyStopping:
    """``early_stopping.*``: remembers the best weights by ``metric``; says stop after ``patience`` bad epochs."""

    def __init__(self, cfg):
        self.metric, self.patience, self.min_delta = cfg.metric, cfg.patience, cfg.min_delta
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, metrics: dict[str, float], weights: dict[str, torch.Tensor]) -> bool:
        """Record epoch ``epoch`` (1-based); returns whether training should stop."""
        value = metrics[self.metric]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in weights.items()}
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
        self.best_weights = state["best_weights"]


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
