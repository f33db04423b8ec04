"""Eight training configurations whose every number must survive refactoring bit for bit.

``tests/fixtures/behaviour/metrics.json`` holds, per configuration, every epoch's metrics and the final
metrics (time and memory left out) as the code computed them at commit eaeb23f, before the composition
module, the step strategies and the evaluation package (issue 20). Regenerate only when a change of
numbers is intended: ``OMP_NUM_THREADS=1 PYTHONPATH=tests python -m helpers.behaviour_cases`` (repository root).
The DDP case trains through ``torchrun`` with 2 processes and reads its epochs back from MLflow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from .configs import FAST, compose_train
from .paths import DATA
from .training import train

REFERENCE = DATA / "behaviour" / "metrics.json"

COMMON = ["precision=float64", "iterations=3"]
# name -> overrides on top of the fast test settings (one process)
CASES = {
    "energy": [*COMMON],
    "forces_graph": [*COMMON, "force.weight=0.3"],
    "jacobians_ema": [*COMMON, "force.weight=0.3", "force.fraction=0.5", "caching.derivatives=true", "ema=average"],
    "lbfgs": [*COMMON, "optimizer=lbfgs", "force.weight=0.3"],
    "ekf": [*COMMON, "optimizer=ekf", "force.weight=0.3"],
    "committee_bootstrap": [*COMMON, "committee=deep", "committee.members=3", "committee.bootstrap=true",
                            "committee.calibration_percent=25", "force.weight=0.3"],
    "taylor": [*COMMON, "augment=taylor", "force.weight=0.3"],
}
# the DDP case: two processes under torchrun, forces of every structure through kept Jacobians
DDP_CASE = [*COMMON, "data.testpercent=30", "optimizer.batchsize=5", "force=full", "tracking.log_model=false",
            "caching.derivatives=true"]


def compared(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics that depend only on the numbers (not on time or memory)."""
    return {k: v for k, v in metrics.items() if not k.startswith(("time/", "memory/", "final/time/"))}


def case_metrics(tmp: Path, name: str) -> dict[str, object]:
    """One one-process case trained into ``tmp``: its per-epoch and final metrics."""
    cfg = compose_train(*FAST, "tracking.enabled=false", *CASES[name])
    final, recorder = train(cfg, tmp / name)
    return {"epochs": [compared(m) for m in recorder.epochs], "final": compared(final)}


def ddp_metrics(tmp: Path) -> dict[str, object]:
    """The DDP case trained by 2 processes into ``tmp``: every metric's per-step values from its MLflow run."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    uri = f"sqlite:///{tmp}/mlflow.db"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "aenet_exp",
               "train", "distributed=ddp", *FAST, *DDP_CASE, f"tracking.uri={uri}", f"hydra.run.dir={tmp}/run"]
    process = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("aenet_exp").experiment_id])[0]
    names = sorted(compared(run.data.metrics))
    return {name: [m.value for m in client.get_metric_history(run.info.run_id, name)] for name in names}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = {name: case_metrics(Path(tmp), name) for name in CASES}
        (Path(tmp) / "ddp").mkdir()
        found["ddp"] = ddp_metrics(Path(tmp) / "ddp")
    REFERENCE.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}")
