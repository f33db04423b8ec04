"""The config a ``train`` command runs (build/prepare.py): a resume checked against the run it continues."""

from __future__ import annotations

import warnings

import pytest

from aenet_exp.build.prepare import prepare
from aenet_exp.build.training import run_training
from aenet_exp.errors import AenetWarning, ConfigError

from helpers import FAST, compose_train

UNTRACKED = [*FAST, "force=subsampled", "tracking.enabled=false"]


@pytest.fixture(scope="module")
def untracked_run(tmp_path_factory):
    """A run of 3 epochs trained with ``UNTRACKED`` (no MLflow run)."""
    run_dir = tmp_path_factory.mktemp("untracked") / "run"
    run_training(compose_train(*UNTRACKED, "iterations=3"), run_dir)
    return run_dir


def prepared(*overrides: str):
    """``overrides`` composed and prepared as ``train`` prepares them; the config that runs."""
    cfg = compose_train(*overrides)
    prepare(cfg, list(overrides))
    return cfg


def test_a_requeued_command_line_resumes(untracked_run):
    """A SLURM requeue repeats the command line with ``resume=``: keys equal to the stored values are not changes."""
    prepared(*UNTRACKED, "iterations=5", f"resume={untracked_run}")


@pytest.mark.parametrize("override, named", [
    ("optimizer.mu=0.1", "optimizer.mu is 0.1 here, 0.001 in the run"),
    ("force=off", "force is {"),
])
def test_a_resume_refuses_real_changes_naming_both_values(untracked_run, override, named):
    with pytest.raises(ConfigError, match="^resume: ") as raised:
        prepared(*UNTRACKED, override, f"resume={untracked_run}")
    assert named in str(raised.value) and "force.weight" not in str(raised.value)


def test_fewer_iterations_than_epochs_done_are_refused(untracked_run):
    with pytest.raises(ConfigError, match=r"^iterations: is 2, but the run in .* has trained 3 epochs"):
        prepared(*UNTRACKED, "iterations=2", f"resume={untracked_run}")


def test_an_untracked_run_resumes_untracked_and_says_so(untracked_run):
    """An MLflow run of only the resumed epochs would be a false record: the run stays untracked (a warning says so),
    and asking for tracking is refused."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = prepared(*FAST, "force=subsampled", "iterations=4", f"resume={untracked_run}")
    assert cfg.tracking.enabled is False
    assert any("not tracked" in str(w.message) for w in caught if issubclass(w.category, AenetWarning))
    with pytest.raises(ConfigError, match="^tracking.enabled: is true, but the run in .* was trained untracked"):
        prepared(*UNTRACKED, "tracking.enabled=true", "iterations=4", f"resume={untracked_run}")
