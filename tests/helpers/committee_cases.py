"""Single-model runs whose every epoch's metrics a one-member committee must reproduce (float64).

``tests/fixtures/single_model/metrics.json`` holds these runs' metrics as the single-network code
computed them before committees existed (commit de74c66); regenerate only when a change of numbers is
intended: ``OMP_NUM_THREADS=1 PYTHONPATH=tests python -m helpers.committee_cases`` (from the repository root).
"""

from __future__ import annotations

import json
from pathlib import Path

from .configs import FAST, compose_train
from .paths import DATA
from .training import train

REFERENCE = DATA / "single_model" / "metrics.json"

# name -> overrides on top of the fast test settings: energies only; forces through graphs under
# autograd; forces from kept feature Jacobians with a weight average and error-weighted sampling.
CASES = {
    "energy_adam": ["precision=float64", "iterations=3"],
    "forces_graph": ["precision=float64", "iterations=3", "force.weight=0.3"],
    "forces_jacobians": [
        "precision=float64", "iterations=3", "force.weight=0.3", "force.fraction=0.5", "caching.derivatives=true",
        "ema=average", "sampling=error_weighted", "optimizer=sgd",
    ],
}


def compared(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics that depend only on the numbers (not on time or memory)."""
    return {k: v for k, v in metrics.items() if not k.startswith(("time/", "memory/"))}


def single_model_metrics(tmp: Path, *extra: str) -> dict[str, list[dict[str, float]]]:
    """Each case's per-epoch metrics, trained into ``tmp`` with ``extra`` overrides."""
    found = {}
    for name, overrides in CASES.items():
        cfg = compose_train(*FAST, "tracking.enabled=false", *overrides, *extra)
        _, recorder = train(cfg, tmp / name)
        found[name] = [compared(m) for m in recorder.epochs]
    return found


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        REFERENCE.write_text(json.dumps(single_model_metrics(Path(tmp)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}")
