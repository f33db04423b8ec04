"""Training: data preparation, batching and caches, the epoch loop, losses and metrics."""

from aenet_exp.training.run import TrainingDiverged, run

__all__ = ["TrainingDiverged", "run"]
