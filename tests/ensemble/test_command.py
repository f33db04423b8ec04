"""``ensemble``: a sweep's jobs recorded in MLflow combined into one calibrated committee (ensemble/command.py)."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from aenet_exp.build.training import run_training
from aenet_exp.data import read_structures
from aenet_exp.descriptor import collate_graphs
from aenet_exp.errors import UserError
from aenet_exp.model import Potential
from aenet_exp.rundir import LOCK_FILE, RunDirectory
from aenet_exp.tracking.mlflow_run import MlflowRun
from aenet_exp.tracking.observer import MlflowObserver, recorded_run_id
from aenet_exp.tracking.sweep import ROLE_TAG, SWEEP_DIR_TAG

from helpers import FAST, SMALL, command, compose_train, store_uri


def ensemble(args: list[str]):
    return command("ensemble", args)


def train_recorded(uri: str, run_dir, sweep_dir, *overrides: str) -> str:
    """A quick training recorded in ``uri`` as a job of the sweep ``sweep_dir``; its run id."""
    cfg = compose_train(*FAST, f"tracking.uri={uri}", "tracking.log_model=false", *overrides)
    observer = MlflowObserver(OmegaConf.to_container(cfg.tracking), sweep_dir=str(sweep_dir), run_dir=run_dir)
    with redirect_stdout(io.StringIO()):
        run_training(cfg, run_dir, [observer])
    return recorded_run_id(run_dir)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two jobs of one sweep: the same split (seed 3), weights drawn from seeds 7 and 8; and a job on seed 4."""
    root = tmp_path_factory.mktemp("sweep")
    uri = store_uri(root)
    parent = MlflowRun.start(uri, "aenet_exp", "sweep", {}, {SWEEP_DIR_TAG: str(root / "multirun"), ROLE_TAG: "sweep"})
    jobs = [train_recorded(uri, root / f"job{k}", root / "multirun", "seed=3", "committee=deep", "committee.members=1",
                           "committee.calibrate=false", f"committee.seeds=[{7 + k}]", "force.weight=0.2")
            for k in range(2)]
    other_split = train_recorded(uri, root / "other", root / "elsewhere", "seed=4")
    return root, uri, jobs, other_split, parent.run_id


def test_a_sweeps_jobs_become_a_calibrated_committee(sweep, tmp_path):
    root, uri, jobs, _, parent = sweep
    out = tmp_path / "committee"
    with redirect_stdout(io.StringIO()) as printed:
        written = ensemble([f"sweep={parent}", f"out={out}", f"tracking.uri={uri}"])
    assert written == [out / "potential.pt"]
    assert "committee of 2 members from 2 runs; 4 structures none of them trained on: 2 calibrate σ, 2 test it" \
        in printed.getvalue()
    committee = Potential.load(out / "potential.pt")
    members = [Potential.load(root / f"job{k}" / "potential.pt").astype(torch.float64) for k in range(2)]
    structures = read_structures(SMALL)[:3]
    graph = collate_graphs([committee.descriptor.graph(s) for s in structures]).to(dtype=torch.float64)
    with torch.no_grad():
        expected = torch.stack([m(graph) for m in members]).mean(0)
        torch.testing.assert_close(committee.astype(torch.float64)(graph), expected, rtol=1e-12, atol=1e-9)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("aenet_exp").experiment_id],
                              filter_string="attributes.run_name = 'ensemble of 2 runs'")
    (run,) = runs
    assert run.info.status == "FINISHED" and run.data.params["ensemble.members"] == "2"
    assert {"final/calibration/energy_factor", "final/test/energy_nll", "final/test/energy_spearman"} <= run.data.metrics.keys()
    assert {"calibration.png", "error_vs_sigma.png", "potential.pt", "energies.test.predicted"} <= \
        {a.path for a in client.list_artifacts(run.info.run_id)}
    assert committee.calibration.energy == pytest.approx(run.data.metrics["final/calibration/energy_factor"], rel=1e-6)
    assert [m.name for m in client.search_logged_models([run.info.experiment_id],
                                                        filter_string=f"source_run_id = '{run.info.run_id}'")] == ["model"]


def test_runs_that_cannot_form_a_committee_are_named(sweep, tmp_path, fast_config):
    root, uri, jobs, other_split, _ = sweep
    other_basis = tmp_path / "basis"
    run_training(fast_config("descriptor.rad_order=5"), other_basis)
    common = [f"out={tmp_path / 'never'}", "tracking.enabled=false", f"tracking.uri={uri}"]
    cases = [
        ([f"runs=[{jobs[0]},{other_basis}]"], rf"^runs: {other_basis} cannot join runs:/{jobs[0]} in a committee: its "
                                             r"descriptor differs \(rad_order: 5 vs 4\)"),
        ([f"runs=[{jobs[0]},{other_split}]"], r"^runs: [01] structure\(s\) are held out of every run's training"),
        ([f"runs=[{jobs[0]}]"], "^runs: a committee needs at least two runs, got 1"),
        ([f"runs=[{jobs[0]}]", "sweep=x"], "^runs: give the runs"),
        (["sweep=0123456789abcdef"], "^sweep: no run 0123456789abcdef"),
    ]
    for args, message in cases:
        with pytest.raises(UserError, match=message):
            ensemble([*args, *common])
    assert not (tmp_path / "never").exists()


def test_a_run_given_twice_or_with_the_same_weights_is_refused(sweep, tmp_path):
    root, uri, jobs, _, _ = sweep
    common = [f"out={tmp_path / 'never'}", "tracking.enabled=false", f"tracking.uri={uri}"]
    with pytest.raises(UserError, match=rf"^runs: runs:/{jobs[0]} is given twice; a committee needs distinct runs$"):
        ensemble([f"runs=[{jobs[0]},{jobs[0]}]", *common])
    same = re.escape(f"runs: {root / 'job0'} has the same weights as runs:/{jobs[0]}; identical members never disagree")
    with pytest.raises(UserError, match=f"^{same}"):
        ensemble([f"runs=[{jobs[0]},{jobs[1]},{root / 'job0'}]", *common])
    assert not (tmp_path / "never").exists()


def test_out_is_claimed_like_a_run_folder(sweep, tmp_path):
    """A training's run folder, a folder another live run holds, a folder of other files: refused, nothing in them
    changed; the last one is written with overwrite=true."""
    root, uri, jobs, _, _ = sweep
    runs, common = f"runs=[{jobs[0]},{jobs[1]}]", ["tracking.enabled=false", f"tracking.uri={uri}"]
    training = root / "job0"
    held, notes = tmp_path / "held", tmp_path / "notes"
    owner = RunDirectory.claim(held)
    notes.mkdir()
    (notes / "README").write_text("mine\n")
    before = {path: path.read_bytes() for path in training.rglob("*") if path.is_file()}
    cases = [(training, "holds a run already"), (held, "is in use by a live run"),
             (notes, "holds other files; give a new or empty folder, or overwrite=true")]
    try:
        for out, message in cases:
            with pytest.raises(UserError, match=f"^out: {out} {message}"):
                ensemble([runs, f"out={out}", *common])
    finally:
        owner.release()
    assert {path: path.read_bytes() for path in training.rglob("*") if path.is_file()} == before
    assert [path.name for path in held.iterdir()] == [LOCK_FILE]
    with redirect_stdout(io.StringIO()):
        assert ensemble([runs, f"out={notes}", "overwrite=true", *common]) == [notes / "potential.pt"]
    assert (notes / "README").read_text() == "mine\n"


@pytest.mark.parametrize("out, key, message", [
    ("{tmp}/a_file", "out", "a_file is a file; give a directory"),
    ("{tmp}/a_file/committee", "out", "a_file is a file, not a directory"),
    ("/proc/aenet_exp", "out", "cannot write in /proc"),
    ("{tmp}/committee tracking.uri=bogus://x", "tracking.uri", "cannot record to bogus://x"),
])
def test_out_and_the_store_are_checked_before_any_run_is_read(tmp_path, out, key, message):
    """The runs do not exist: were they read first, their error would come first."""
    (tmp_path / "a_file").write_text("")
    out, *more = out.format(tmp=tmp_path).split()
    with pytest.raises(UserError, match=f"^{key}: .*{message}"):
        ensemble([f"runs=[{tmp_path / 'missing1'},{tmp_path / 'missing2'}]", f"out={out}", *more])
    assert [path.name for path in tmp_path.iterdir()] == ["a_file"]
