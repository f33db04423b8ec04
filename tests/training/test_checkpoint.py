"""Checkpoints (training/checkpoint.py): resume equals an uninterrupted run; no code runs from a checkpoint."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest
import torch

from aenet_exp.build.training import run_training
from aenet_exp.config.validation import ConfigError

from helpers import FAST, train


@pytest.mark.parametrize(
    "setup",
    [
        ["force=subsampled", "force.fraction=0.5"],
        ["caching=energy"],
        ["scheduler=plateau", "scheduler.warmup_epochs=1", "scheduler.patience=0", "ema.decay=0.9",
         "early_stopping.patience=10"],
        ["sampling=energy_weighted"],
        ["sampling=error_weighted", "force=subsampled", "force.fraction=0.5"],
        ["optimizer=lbfgs", "caching=auto", "force=subsampled"],
        ["optimizer=ekf", "caching=auto", "force=subsampled", "ema.decay=0.9"],
        ["committee=deep", "committee.members=3", "force=subsampled", "ema.decay=0.9"],
    ],
)
def test_resume_equals_an_uninterrupted_run(fast_config, tmp_path, setup):
    base = [*setup, "precision=float64", "checkpoint.every=1"]
    _, whole = train(fast_config(*base, "iterations=4"), tmp_path / "whole")
    _, first = train(fast_config(*base, "iterations=2"), tmp_path / "part")
    assert (tmp_path / "part" / "checkpoint.pt").is_file()
    metrics, rest = train(fast_config(f"resume={tmp_path / 'part'}", "iterations=4"), tmp_path / "ignored")
    assert len(rest.epochs) == 2 and not (tmp_path / "ignored").exists()
    for expected, got in zip(whole.epochs[2:], rest.epochs):
        # time and cache sizes measure the process (a resumed one has cached only what it has seen), not the training
        for key in (k for k in expected if not k.startswith(("time/", "memory/"))):
            assert got[key] == pytest.approx(expected[key], rel=1e-10), key
    assert metrics["final/test/energy_rmse"] == pytest.approx(whole.result.metrics["final/test/energy_rmse"], rel=1e-10)
    assert len(rest.result.history["train/loss"]) == 4


def test_a_checkpoint_written_before_its_keys_were_renamed_resumes_as_an_uninterrupted_run(fast_config, tmp_path):
    """Checkpoints of earlier versions keep the force subset in ``sampler`` (its generator in ``rng.sampler``) and
    the epoch order's generator in ``rng.shuffle``; they still resume exactly."""
    base = ["sampling=error_weighted", "force=subsampled", "force.fraction=0.5", "precision=float64",
            "checkpoint.every=1"]
    _, whole = train(fast_config(*base, "iterations=4"), tmp_path / "whole")
    train(fast_config(*base, "iterations=2"), tmp_path / "part")
    path = tmp_path / "part" / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["trainer"]
    subset = state.pop("force_subset")
    state["rng"] = {"torch": state["rng"]["torch"], "shuffle": state["rng"]["epoch_order"], "sampler": subset["rng"]}
    state["sampler"] = {"selected": subset["selected"], "window": subset["window"]}
    torch.save(checkpoint, path)
    _, rest = train(fast_config(f"resume={tmp_path / 'part'}", "iterations=4"), tmp_path / "ignored")
    for expected, got in zip(whole.epochs[2:], rest.epochs, strict=True):
        assert {k: v for k, v in got.items() if not k.startswith(("time/", "memory/"))} == \
            {k: v for k, v in expected.items() if not k.startswith(("time/", "memory/"))}


def test_checkpoint_refuses_code_and_resume_names_missing_checkpoint(fast_config, tmp_path):
    from aenet_exp.config.validation import validate
    from aenet_exp.training.checkpoint import load_checkpoint

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "aenet_exp-checkpoint", "x": Exploit()}, tmp_path / "checkpoint.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        load_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="^resume: no checkpoint.pt"):
        validate(fast_config(f"resume={tmp_path / 'nothing'}"))



@pytest.mark.parametrize(
    "content, message",
    [(b"", "not an aenet_exp checkpoint"), (b"\x00\xffgarbage" * 8, "not an aenet_exp checkpoint"),
     ("pickle", "not an aenet_exp checkpoint"), ("no model", "incomplete aenet_exp checkpoint")],
    ids=["empty", "random-bytes", "foreign-pickle", "dict-without-the-model"],
)
def test_a_corrupt_or_foreign_checkpoint_is_one_user_error(tmp_path, content, message):
    from aenet_exp.errors import UserError
    from aenet_exp.training.checkpoint import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    if content == "pickle":
        torch.save({"weights": torch.zeros(2)}, path)
    elif content == "no model":
        torch.save({"format": "aenet_exp-checkpoint", "epoch": 3}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=f"^{path}: .*{message}") as refused:
        load_checkpoint(tmp_path)
    assert "\n" not in str(refused.value)


def test_a_truncated_checkpoint_is_one_user_error(fast_config, tmp_path):
    from aenet_exp.errors import UserError
    from aenet_exp.training.checkpoint import load_checkpoint

    run_training(fast_config(), tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(UserError, match="not an aenet_exp checkpoint"):
        run_training(fast_config(f"resume={tmp_path / 'run'}"), tmp_path / "x")
    with pytest.raises(UserError, match="not an aenet_exp checkpoint"):
        load_checkpoint(tmp_path / "run")


def test_the_last_checkpoints_and_the_best_are_kept(fast_config, tmp_path):
    import math

    from aenet_exp.rundir import BEST_MODEL_FILE
    from aenet_exp.training.checkpoint import load_checkpoint

    _, rec = train(fast_config("precision=float64", "iterations=6", "checkpoint.every=1", "checkpoint.keep=3",
                               "optimizer.mu=0.05"), tmp_path / "run")
    retained = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("epoch-*.pt"))
    assert retained == ["epoch-000004.pt", "epoch-000005.pt", "epoch-000006.pt"]
    assert load_checkpoint(tmp_path / "run")["epoch"] == 6  # resume= takes the newest
    losses = [e["test/loss"] for e in rec.epochs]
    best = min(range(6), key=losses.__getitem__)
    assert best < 5  # the best is not the last: the test tells them apart
    best_state = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best_state["epoch"] == best + 1
    _, again = train(fast_config("precision=float64", "iterations=1", "optimizer.mu=1e-30",
                                 f"init_from={tmp_path / 'run' / BEST_MODEL_FILE}"), tmp_path / "tuned")
    assert math.isclose(again.epochs[0]["test/energy_rmse"], rec.epochs[best]["test/energy_rmse"], rel_tol=1e-10)


def test_a_signal_at_an_epochs_end_waits_until_every_callback_has_seen_the_epoch(fast_config, tmp_path):
    """SIGTERM while the first observer handles epoch 2's end (say, MLflow has just logged it): the checkpoint
    written on the way out still holds epoch 2, so a resume does not train and log it again."""
    import os
    import signal

    from aenet_exp.training.checkpoint import load_checkpoint
    from aenet_exp.training.events import Callback
    from aenet_exp.interrupts import Terminated

    class TerminatedWhileLoggingEpoch2(Callback):
        def on_epoch_end(self, epoch, metrics):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Terminated):
        run_training(fast_config("iterations=5", "checkpoint.every=1000"), tmp_path, [TerminatedWhileLoggingEpoch2()])
    assert load_checkpoint(tmp_path)["epoch"] == 2


def limited_file_size() -> None:
    """In the child process: no file beyond 20 kB (a checkpoint here is ~33 kB); a write past it fails with EFBIG,
    as one on a full disk fails with ENOSPC (Python ignores SIGXFSZ)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


@pytest.mark.slow
def test_a_checkpoint_the_disk_refuses_is_one_line_naming_it_exit_2(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run([sys.executable, "-m", "aenet_exp", "train", *FAST, "tracking.enabled=false",
                             "hydra.run.dir=run"], cwd=tmp_path, env=env, preexec_fn=limited_file_size,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"aenet_exp: error: cannot write {tmp_path / 'run' / 'checkpoint.pt'}: File too large"]
