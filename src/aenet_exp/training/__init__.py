"""Training: the composition root (:func:`run`), the step and epoch loops, losses, caches and metrics."""

from aenet_exp.training.callbacks import TrainingDiverged
from aenet_exp.training.run import run

__all__ = ["TrainingDiverged", "run"]
