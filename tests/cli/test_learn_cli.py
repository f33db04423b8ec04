"""``python -m aenet_exp learn`` as a user runs it: a campaign labelled by a shell command, killed while labelling
and resumed, pays no label twice and its force error on hotter MD falls; SIGTERM marks it KILLED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.units import fs

from aenet_exp.learning.labels import atoms_key

from helpers import run_cli, runs_of, store_uri

# a short campaign: small trainings, short trajectories, a few labels per generation
SMALL_CAMPAIGN = ["iterations=60", "explore.steps=60", "explore.every=10", "select.max_per_generation=4",
                  "campaign.generations=3", "checkpoint.every=20"]

LABELLER = """
import sys, time
from ase.io import read, write
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
atoms = read(sys.argv[1])
with open(sys.argv[3], "a") as log:
    log.write(" ".join(f"{x:.6f}" for x in atoms.positions.ravel()[:6]) + "\\n")
time.sleep(float(sys.argv[4]))
atoms.calc = EMT()
results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
atoms.calc = SinglePointCalculator(atoms, **results)
write(sys.argv[2], atoms, format="extxyz")
"""


def hot_md_frames(path: Path) -> None:
    """EMT Langevin MD of the 32-atom Cu cell at 900 K: 6 labelled frames hotter than the seed set."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature_K=900, rng=np.random.default_rng(0))
    dynamics = Langevin(atoms, 2 * fs, temperature_K=900, friction=0.02 / fs, fixcm=False, rng=np.random.default_rng(1))
    frames = []
    for _ in range(6):
        dynamics.run(25)
        frame = atoms.copy()
        frame.calc = EMT()
        frame.get_forces()
        frames.append(frame)
    write(path, frames, format="extxyz")


def labeller(tmp_path: Path, delay: float) -> str:
    script = tmp_path / "label.py"
    script.write_text(LABELLER)
    return f"oracle.command='{sys.executable} {script} {{input}} {{output}} {tmp_path / 'sent.log'} {delay}'"


def start(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "aenet_exp", "learn", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(condition, process: subprocess.Popen, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_campaign_killed_while_labelling_resumes_without_paying_a_label_twice(tmp_path):
    hot_md_frames(tmp_path / "hot.xyz")
    campaign = tmp_path / "campaign"
    uri = store_uri(tmp_path)
    args = [*SMALL_CAMPAIGN, "oracle=command", labeller(tmp_path, 0.5), f"campaign.test_path={tmp_path / 'hot.xyz'}",
            f"tracking.uri={uri}", f"hydra.run.dir={campaign}"]
    process = start(*args, cwd=tmp_path)
    try:
        wait_for(lambda: len(list((campaign / "labels").glob("*.xyz"))) >= 2, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    stored_before = len(list((campaign / "labels").glob("*.xyz")))
    result = run_cli("learn", f"resume={campaign}", f"tracking.uri={uri}", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "done: the last of campaign.generations=3 generations" in result.stdout, result.stdout

    labels = read(campaign / "labels.xyz", index=":")
    keys = [a.info["label_key"] for a in labels]
    assert len(keys) == len(set(keys))  # none stored twice
    assert stored_before < len(keys) <= 8  # two labelling generations of at most 4; the resumed run labelled more
    sent = (tmp_path / "sent.log").read_text().splitlines()
    assert len(sent) - len(set(sent)) <= 1  # at most the label in flight at the kill was sent again
    assert len({atoms_key(a) for a in labels}) == len(keys)

    client, runs = runs_of(uri)
    parent = [r for r in runs if r.data.tags.get("aenet_exp.command") == "learn"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"  # the killed run, continued and finished
    history = {m.step: m.value for m in client.get_metric_history(parent[0].info.run_id, "campaign/test/force_rmse")}
    assert sorted(history) == [0, 1, 2]
    assert history[2] < history[1] < history[0], history  # the force error on hotter MD falls generation by generation
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    assert (campaign / "potential.pt").is_file()


@pytest.mark.slow
def test_sigterm_marks_the_campaign_killed_and_resume_finishes_it(tmp_path):
    campaign, uri = tmp_path / "campaign", store_uri(tmp_path)
    args = [*SMALL_CAMPAIGN, "campaign.generations=2", f"tracking.uri={uri}", f"hydra.run.dir={campaign}"]
    process = start(*args, cwd=tmp_path)
    try:
        wait_for(lambda: (campaign / "generations" / "000" / "run" / "checkpoint.pt").is_file(), process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143
    assert stderr.strip().splitlines()[-1].startswith("aenet_exp: interrupted (")
    assert f"labels stored so far are kept in {campaign}: resume={campaign} continues" in stderr
    _, runs = runs_of(uri)
    parent = next(r for r in runs if r.data.tags.get("aenet_exp.command") == "learn")
    assert parent.info.status == "KILLED" and f"the MLflow run {parent.info.run_id} is marked KILLED" in stderr
    result = run_cli("learn", f"resume={campaign}", f"tracking.uri={uri}", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    _, runs = runs_of(uri)
    assert next(r for r in runs if r.data.tags.get("aenet_exp.command") == "learn").info.status == "FINISHED"


@pytest.mark.slow
def test_bad_keys_end_in_one_line_before_anything_runs(tmp_path):
    result = run_cli("learn", "select.trust_low=0.6", "select.trust_high=0.5", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("aenet_exp: error: select.trust_low: is 0.6, but must be below select.trust_high")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_a_generation_whose_every_label_failed_stops_in_one_line(tmp_path):
    campaign = tmp_path / "campaign"
    result = run_cli("learn", *SMALL_CAMPAIGN, "oracle=command", "oracle.command='false {input} {output}'",
                     "tracking.enabled=false", f"hydra.run.dir={campaign}", cwd=tmp_path, timeout=600)
    assert result.returncode == 2, result.stderr
    *warned, error = result.stderr.splitlines()  # the warnings: generation 0's calibration split is 1 structure
    assert error.startswith("aenet_exp: error: oracle: every label of generation 0 failed (reasons in ")
    assert all(line.startswith("aenet_exp: warning: ") for line in warned)
    failed = read(campaign / "failed_labels.xyz", index=":")
    assert failed and all(a.info["failure"] == "the command exited with status 1" for a in failed)
