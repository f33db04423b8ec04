"""``precision.*``: the training device, the floating dtype, and where labels and cached features live."""

from __future__ import annotations

import torch


def resolve_device(requested: str | None) -> torch.device:
    """``precision.device``: as given, else CUDA when present, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``precision.dtype``; ``auto`` is float32 on CPU and float64 on GPU (the reference's rule)."""
    if name == "auto":
        return torch.float64 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def storage_devices(memory_mode: str, device: torch.device) -> tuple[torch.device, torch.device]:
    """Where ``(energy targets, cached features)`` live for ``precision.memory_mode``.

    ``cpu``: host, moved per batch; ``gpu``: the training device, moved once; ``mixed``:
    features on the device, targets on the host. Graphs are built on the host (in DataLoader
    workers) and moved per batch in every mode.
    """
    host = torch.device("cpu")
    return {"cpu": (host, host), "gpu": (device, device), "mixed": (host, device)}[memory_mode]
