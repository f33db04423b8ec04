"""Checkpoints: everything needed to continue a run exactly, as tensors and plain data only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "aenet_exp-checkpoint"


def save_checkpoint(directory: Path, state: dict) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` through a temporary file and a rename."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT_FILE
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=f".{CHECKPOINT_FILE}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save({"format": FORMAT, "version": 1, **state}, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_checkpoint(directory: Path) -> dict:
    """The state in ``directory/checkpoint.pt``, unpickled with ``weights_only=True``."""
    path = Path(directory) / CHECKPOINT_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an aenet_exp checkpoint")
    return state
