"""Training in several processes (distributed=ddp under torchrun) equals one process with the same batches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aenet_exp.config.validation import ConfigError, validate
from aenet_exp.training.distributed import Ranks, balanced_owners

from helpers import FAST, run_cli

# 11 training structures (24 or 6 atoms) in batches of 5, 5 and 1: the last batch leaves rank 1 an
# empty share; 5 test structures are shared 3/2.
RUN = [*FAST, "data.testpercent=30", "optimizer.batchsize=5", "precision=float64", "force=full", "iterations=3",
       "tracking.log_model=false"]


COMPARED = ["train/loss", "train/energy_rmse", "train/force_rmse", "test/loss", "test/energy_rmse", "test/force_rmse",
            "final/train/energy_rmse", "final/test/force_rmse"]


# Each rank keeps its own caches and loader worker; speed flags never change results (test_training), so
# the two-process run with them must still equal the plain one-process run.
PER_RANK_FLAGS = ["caching.neighbors=true", "caching.derivatives=true", "dataloader.num_workers=1"]


REL = 1e-10  # ranks add the same float64 terms in another order: only rounding may differ


def start_torchrun(*args: str, cwd: Path) -> subprocess.Popen:
    """Start ``python -m torch.distributed.run --nproc_per_node=2 --standalone -m aenet_exp ...``, one thread each,
    in a session of its own (so that it can be stopped with its workers)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "aenet_exp"]
    return subprocess.Popen(
        [*command, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def histories(uri: str) -> tuple[list, dict[str, list[float]]]:
    """The runs in the store and the first run's per-step values of the compared metrics."""
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("aenet_exp").experiment_id])
    run_id = runs[0].info.run_id
    return runs, {name: [m.value for m in client.get_metric_history(run_id, name)] for name in COMPARED}


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant, rel",
    # L-BFGS divides by differences of gradients (its curvature pairs), which magnifies the rounding
    [(["sampling=uniform"], REL), (["sampling=error_weighted"], REL), (["optimizer=lbfgs"], 1e-7),
     (["committee=deep", "committee.members=3", "committee.calibrate=false", "committee.bootstrap=true"], REL)],
    ids=["uniform", "error_weighted", "lbfgs", "committee"],
)
def test_two_processes_train_as_one(tmp_path, variant, rel):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    run = [*RUN, *variant]
    ddp = start_torchrun("train", "distributed=ddp", *run, *PER_RANK_FLAGS, f"tracking.uri=sqlite:///{two}/mlflow.db",
                         f"hydra.run.dir={two}/run", cwd=two)  # beside the one-process run: most of both is start-up
    try:
        single = run_cli("train", *run, f"tracking.uri=sqlite:///{one}/mlflow.db", f"hydra.run.dir={one}/run", cwd=one)
        stdout, stderr = ddp.communicate(timeout=120)
    finally:
        if ddp.poll() is None:
            os.killpg(ddp.pid, signal.SIGKILL)
    assert single.returncode == 0, single.stderr
    assert ddp.returncode == 0, stderr

    _, expected = histories(f"sqlite:///{one}/mlflow.db")
    runs, got = histories(f"sqlite:///{two}/mlflow.db")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # rank 0 alone records
    assert runs[0].data.params["distributed"] == "ddp" and runs[0].data.params["distributed.world_size"] == "2"
    for name in COMPARED:
        assert len(got[name]) == len(expected[name]) == (1 if name.startswith("final/") else 3), name
        assert got[name] == pytest.approx(expected[name], rel=rel), name
    # rank 0 alone writes: the same files as one process, one summary line, one MLflow run announced
    assert files_under(two / "run") == files_under(one / "run")
    assert "potential.pt" in files_under(two / "run")
    assert stdout.count("done: ") == 1 and stdout.count("MLflow run ") == 1


@pytest.mark.slow
def test_ddp_outside_torchrun_is_refused(tmp_path):
    result = run_cli("train", *FAST, "distributed=ddp", "tracking.enabled=false", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("aenet_exp: error: distributed: is 'ddp', but this process was not started by torchrun")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["distributed=none"], "^distributed: is 'none', but torchrun started 2 processes"),
        (["distributed=ddp", "precision.device=cpu:0"], "^precision.device: is 'cpu:0', but with distributed=ddp"),
        (["distributed=mpi"], "^distributed: expected 'none' or 'ddp', got 'mpi'"),
    ],
)
def test_launch_rules_name_the_key(fast_config, monkeypatch, overrides, message):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=message):
        validate(fast_config(*overrides))


def test_batches_are_shared_by_atoms():
    batch = np.array([10, 11, 12, 13, 14, 15])
    n_atoms = np.zeros(16, dtype=int)
    n_atoms[batch] = [6, 24, 6, 6, 24, 6]
    # largest first, each to the rank with fewest atoms so far, ties to the lower rank
    assert balanced_owners(n_atoms[batch], 2).tolist() == [0, 0, 1, 0, 1, 1]
    shares = [Ranks(rank, 2).share(batch, n_atoms) for rank in range(2)]
    assert [s.tolist() for s in shares] == [[10, 11, 13], [12, 14, 15]]  # batch order kept
    assert [int(n_atoms[s].sum()) for s in shares] == [36, 36]
    assert [Ranks(rank, 3).share(batch[:1], n_atoms).tolist() for rank in range(3)] == [[10], [], []]
    assert Ranks().share(batch, n_atoms).tolist() == batch.tolist()  # one process: the batch as planned



# A fresh interpreter joins a one-process gloo group, creates an optimiser inside it (which first imports
# torch._dynamo and, through it, torch.distributed.nn) and adds a tensor over the group; after the group the
# gloo threads must be gone.
GROUP_THREADS_AFTER_THE_GROUP = """
import os, socket, torch
from aenet_exp.training.distributed import joined
with socket.socket() as free:
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
with joined(True, torch.device("cpu")) as (ranks, _):
    torch.optim.Adam([torch.nn.Parameter(torch.ones(3))])
    ranks.sum(torch.ones(3))
threads = [open(f"/proc/self/task/{task}/comm").read().strip() for task in os.listdir("/proc/self/task")]
print(sum(name.startswith(("pt_gloo", "gloo")) for name in threads))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc (Linux)")
def test_the_process_group_ends_with_its_block_also_after_an_optimiser_was_made_in_it():
    """A group the optimiser's first import captured lived until Python's exit, its gloo threads with it: one of them
    still releasing the last all_reduce while Python shut down aborted the rank (SIGABRT after the last epoch)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    found = subprocess.run([sys.executable, "-c", GROUP_THREADS_AFTER_THE_GROUP], env=env, capture_output=True,
                           text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["0"]
