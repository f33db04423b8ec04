"""Wall time per training phase (``tracking.timing``)."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch

PHASES = ("data", "featurize", "forward", "backward", "optimizer")


class PhaseTimer:
    """Sums seconds per phase; synchronises CUDA so GPU work lands in the phase that queued it."""

    def __init__(self, enabled: bool, device: torch.device):
        self.enabled = enabled
        self.sync = device.type == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str):
        if not self.enabled:
            yield
            return
        if self.sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                torch.cuda.synchronize()
            self.seconds[name] += time.perf_counter() - start

    def take(self) -> dict[str, float]:
        """Seconds per phase since the last call, then reset."""
        taken = {p: self.seconds.get(p, 0.0) for p in PHASES}
        self.seconds.clear()
        return taken
