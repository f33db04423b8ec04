"""Training from built parts (:mod:`aenet_exp.build.training` builds them from the config): the step and epoch
loops, losses, caches and checkpoints."""

from aenet_exp.training.callbacks import TrainingDiverged

__all__ = ["TrainingDiverged"]
