"""Checkpoints: everything needed to continue a run exactly, as tensors and plain data only."""

from __future__ import annotations

from pathlib import Path

from aenet_exp.errors import UserError
from aenet_exp.files import load_tensors, save_tensors
from aenet_exp.rundir import CHECKPOINT_FILE

FORMAT = "aenet_exp-checkpoint"
VERSION = 1


class CheckpointError(UserError):
    """A checkpoint that cannot be read or no longer fits the run (one line for the user)."""


def save_checkpoint(directory: Path, state: dict, name: str = CHECKPOINT_FILE) -> Path:
    """Write ``state`` to ``directory/name`` (``checkpoint.pt``) atomically."""
    return save_tensors(Path(directory) / name, {"format": FORMAT, "version": VERSION, **state})


def load_checkpoint(directory: str | Path) -> dict:
    """The state in ``directory/checkpoint.pt``, unpickled with ``weights_only=True`` (no code runs from it)."""
    path = Path(directory) / CHECKPOINT_FILE
    state = load_tensors(path, "an aenet_exp checkpoint")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an aenet_exp checkpoint")
    missing = sorted({"epoch", "config", "settings", "model", "trainer", "history"} - set(state))
    if missing:
        raise CheckpointError(f"{path}: an incomplete aenet_exp checkpoint (no {', '.join(missing)})")
    return state
