"""Training: data preparation, batching and caches, the epoch loop, losses and metrics."""

from aenet_exp.training.run import run

__all__ = ["run"]
