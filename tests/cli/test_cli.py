"""The command line as a user runs it: subprocesses against a real SQLite MLflow store."""

from __future__ import annotations

import numpy as np
import pytest

from aenet_exp.data.readers import SHARED_PREFIX

from helpers import FAST, ROOT, SMALL, run_cli, runs_of, store_uri

pytestmark = pytest.mark.slow


def test_train_records_a_complete_run(recorded_cli_run, monkeypatch):
    result, uri = recorded_cli_run.result, recorded_cli_run.uri
    assert result.returncode == 0, result.stderr
    client, runs = runs_of(uri)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["force.fraction"] == "0.5" and params["optimizer.mu"] == "0.001"
    assert params["optimizer.name"] == "adam" and params["dataset.structures"] == "16"
    assert params["dataset.force_structures"] == "16" and params["dataset.species"] == "O,Ti"
    for name in ("train/energy_rmse", "test/energy_rmse", "train/force_rmse", "test/force_rmse", "train/loss",
                 "time/epoch_s", "time/data_s", "time/featurize_s", "time/forward_s", "time/backward_s",
                 "time/optimizer_s"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2, 3], name
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "potential.pt", "learning_curve.png", "parity.png", "energies.train.predicted",
            "energies.test.predicted", "forces.train.predicted", "forces.test.predicted"} <= artifacts
    assert "force=subsampled" in run.data.tags["aenet_exp.overrides"]
    assert len(run.data.tags.get("mlflow.source.git.commit", "")) >= 40
    assert "per_epoch_s" in result.stdout  # the timing summary

    from aenet_exp.calculator import Calculator
    from aenet_exp.data import read_structures

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    calc = Calculator.load(f"runs:/{run.info.run_id}")
    energies = calc.predict(read_structures(FAST[0].split("=", 1)[1])[:2]).energy_pred
    assert np.isfinite(energies).all()


def test_sweep_records_children_under_one_parent(grid_sweep):
    result, uri = grid_sweep.result, grid_sweep.uri
    assert result.returncode == 0, result.stderr
    _, runs = runs_of(uri)
    parents = [r for r in runs if r.data.tags.get("aenet_exp.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    grid = {(r.data.params["optimizer.mu"], r.data.params["force.weight"]) for r in children}
    assert grid == {("0.001", "0.1"), ("0.001", "0.3"), ("0.003", "0.1"), ("0.003", "0.3")}
    assert all(r.info.status == "FINISHED" for r in runs)


@pytest.mark.parametrize(
    "override, key",
    [("force.weight=2", "force.weight"), ("data.testpercent=150", "data.testpercent"),
     ("optimizer.batchsize=0", "optimizer.batchsize"), ("optimized_metric=val/loss", "optimized_metric")],
)
def test_user_error_names_key_without_traceback_or_run(tmp_path, override, key):
    uri = store_uri(tmp_path, made=False)
    result = run_cli("train", *FAST, f"tracking.uri={uri}", override, cwd=tmp_path)
    assert result.returncode == 2
    assert f"aenet_exp: error: {key}: " in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_bad_data_file_names_it(tmp_path):
    bad = tmp_path / "broken.xsf"
    bad.write_text("# total energy = -1.0 eV\nCRYSTAL\nPRIMVEC\n1 0 0\n0 1 0\n")
    result = run_cli("train", *FAST, f"data.path={bad}", f"tracking.uri={store_uri(tmp_path)}", cwd=tmp_path)
    assert result.returncode == 2
    assert f"aenet_exp: error: {bad}, line 5: unexpected end of file" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_shared_data_says_so(tmp_path):  # run where no shared folder is: nothing of it is read
    result = run_cli("train", "data=tio2", "tracking.enabled=false", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{SHARED_PREFIX}data/tio2-1000/dir_xsf.tar.gz" in result.stderr and "shared data folder" in result.stderr


def test_unknown_command_and_help(tmp_path):
    assert "usage: python -m aenet_exp {train,build-db,export,select,ensemble,learn}" in run_cli("--help", cwd=tmp_path).stdout
    result = run_cli("fly", cwd=tmp_path)
    assert result.returncode == 2 and "unknown command 'fly'" in result.stderr


def run_in_terminal(args: list[str], cwd) -> str:
    """Run the CLI with a pseudo-terminal as stdout and stderr; returns what it drew."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns of a terminal
    process = subprocess.Popen([sys.executable, "-m", "aenet_exp", *args], cwd=cwd, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closes when the process exits
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=300)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal_only(tmp_path):
    fast = [a for a in FAST if not a.startswith("tracking.show_progress")] + ["tracking.enabled=false"]
    drawn = run_in_terminal(["train", *fast, "tracking.show_batch_progress=true"], tmp_path)
    assert "epochs: 100%" in drawn and "epoch 2:" in drawn
    assert "loss " in drawn and " meV/atom" in drawn  # live loss and errors (train/test) beside the bar
    quiet = run_cli("train", *fast, "tracking.show_progress=true", cwd=tmp_path)
    assert quiet.returncode == 0 and "epochs:" not in quiet.stderr + quiet.stdout
    hidden = run_in_terminal(["train", *fast, "tracking.show_progress=false"], tmp_path)
    assert "epochs:" not in hidden and "done:" in hidden


def test_diverging_training_stops_with_a_message_and_a_failed_run(tmp_path):
    from aenet_exp.training.checkpoint import load_checkpoint

    uri = store_uri(tmp_path)
    # linear networks and a large SGD step blow up after a few epochs (float32)
    result = run_cli(
        "train", *FAST, f"tracking.uri={uri}", "optimizer=sgd", "optimizer.lr=5", "model.activations=[linear]",
        "iterations=6", "checkpoint.every=1", "hydra.run.dir=run", cwd=tmp_path,
    )
    assert result.returncode == 2
    import re

    diverged = re.search(r"aenet_exp: error: training diverged at epoch (\d+): the loss is", result.stderr)
    assert diverged and int(diverged.group(1)) > 1, result.stderr
    assert "Traceback" not in result.stderr
    _, runs = runs_of(uri)
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert "diverged" in runs[0].data.tags["aenet_exp.failure_reason"]
    assert load_checkpoint(tmp_path / "run")["epoch"] == int(diverged.group(1)) - 1  # the last good one is kept


def test_build_db_then_train_from_it(tmp_path):
    from aenet_exp.data import StructureDatabase

    database = tmp_path / "small.h5"
    built = run_cli("build-db", f"data.path={FAST[0].split('=', 1)[1]}", f"data.database={database}",
                    "data.compression=lzf", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert f"wrote 16 structures to {database}" in built.stdout
    assert len(StructureDatabase(database)) == 16
    uri = store_uri(tmp_path)
    trained = run_cli("train", *FAST, f"data.database={database}", "data.path=/nonexistent", f"tracking.uri={uri}",
                      "dataloader.num_workers=2", "caching=force", "force=subsampled", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr  # the database exists: data.path is not read
    _, runs = runs_of(uri)
    assert runs[0].info.status == "FINISHED" and runs[0].data.params["data.database"] == str(database)
    assert runs[0].data.params["dataloader.num_workers"] == "2" and "final/test/force_rmse" in runs[0].data.metrics


def test_build_db_needs_a_database_path(tmp_path):
    result = run_cli("build-db", *[a for a in FAST if a.startswith("data.")], cwd=tmp_path)
    assert result.returncode == 2 and "aenet_exp: error: data.database: " in result.stderr


def test_sweep_with_a_bad_value_records_nothing(tmp_path):
    uri = store_uri(tmp_path)
    result = run_cli("train", "-m", *FAST, f"tracking.uri={uri}", "force.weight=2,3", cwd=tmp_path)
    assert result.returncode == 2 and "aenet_exp: error: force.weight: " in result.stderr
    client, runs = runs_of(uri)
    assert runs == []  # the sweep's parent is deleted


def test_eight_parallel_jobs_share_one_store(tmp_path):
    """8 sweep jobs, 4 at a time in separate processes (joblib), all recorded whole in one SQLite store."""
    uri = store_uri(tmp_path)
    result = run_cli(
        "train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "seed=1,2,3,4,5,6,7,8", *FAST,
        f"tracking.uri={uri}", "iterations=2", cwd=tmp_path, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    client, runs = runs_of(uri)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(children) == 8 and len(runs) == 9
    assert sorted(int(r.data.params["seed"]) for r in children) == list(range(1, 9))
    for child in children:
        assert child.info.status == "FINISHED"
        history = client.get_metric_history(child.info.run_id, "train/loss")
        assert [m.step for m in history] == [1, 2]
        assert child.data.params["dataset.structures"] == "16"


def test_unusable_store_or_output_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("train", *FAST, f"tracking.uri=sqlite:///{blocker}/mlflow.db", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 2 and "aenet_exp: error: tracking.uri: cannot record to" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "potential.pt").exists()
    result = run_cli("train", *FAST, "tracking.enabled=false", f"resume={blocker}", cwd=tmp_path)
    assert result.returncode == 2 and "aenet_exp: error: resume: " in result.stderr



@pytest.mark.parametrize(
    "override, line",
    [
        ("optimizer.mus=0.1", "optimizer.mus: no such key in optimizer; did you mean optimizer.mu"),
        ("force.weight=abc", "force.weight: Value 'abc' of type 'str' could not be converted to Float"),
        ("optimizer=rmsprop", "optimizer=rmsprop: no such option; the options of optimizer are adam, adamw, ekf, lbfgs, sgd"),
        ("force.weight=[", "cannot parse the override: "),
        ("+optimizer.lr_typo=1", "optimizer.lr_typo: no such key in optimizer; did you mean optimizer.lr"),
    ],
)
def test_hydras_composition_errors_are_one_line_exit_2(tmp_path, override, line):
    result = run_cli("train", *FAST, f"tracking.uri={store_uri(tmp_path, made=False)}", override, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(f"aenet_exp: error: {line}"), result.stderr
    assert result.stderr.count("\n") == 1 and "base_" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_build_db_into_a_directory_or_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "a-file").write_text("x")
    for target, message in (("a-directory", "is a directory"), ("a-file/db.h5", "cannot write the database")):
        result = run_cli("build-db", f"data.path={SMALL}", f"data.database={target}", cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_resume_continues_the_same_mlflow_run_and_refuses_a_corrupt_checkpoint_or_changed_overrides(tmp_path):
    uri = store_uri(tmp_path)
    first = run_cli("train", *FAST, f"tracking.uri={uri}", "iterations=2", "hydra.run.dir=run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    changed = run_cli("train", "resume=run", "iterations=4", "optimizer.mu=0.1", cwd=tmp_path)
    assert changed.returncode == 2 and "aenet_exp: error: resume: " in changed.stderr and "optimizer.mu" in changed.stderr
    again = run_cli("train", f"resume={tmp_path / 'run'}", "iterations=4", cwd=tmp_path)  # the store of the run
    assert again.returncode == 0, again.stderr
    client, runs = runs_of(uri)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")]
    assert steps == [1, 2, 3, 4]
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:500])
    corrupt = run_cli("train", "resume=run", "iterations=6", cwd=tmp_path)
    assert corrupt.returncode == 2 and "not an aenet_exp checkpoint" in corrupt.stderr
    assert corrupt.stderr.count("\n") == 1 and "Traceback" not in corrupt.stderr
    assert not (tmp_path / "outputs").exists()  # a resumed run works in its own folder


def test_three_trainings_at_once_on_a_new_store_all_record(tmp_path):
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path}/new/mlflow.db"
    processes = [
        subprocess.Popen([sys.executable, "-m", "aenet_exp", "train", *FAST, f"tracking.uri={uri}", f"hydra.run.dir=r{k}"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(3)
    ]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in processes]
    assert [code for code, _ in results] == [0, 0, 0], results
    _, runs = runs_of(uri)
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}


def test_runs_from_the_folder_above_a_checkout_named_aenet_exp(tmp_path):
    """There a folder ``aenet_exp`` (the checkout, no ``__init__.py``) would shadow the installed package."""
    (tmp_path / "aenet_exp").symlink_to(ROOT)
    result = run_cli("train", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "descriptor:" in result.stdout


def test_a_run_through_the_cli_registers_its_model(recorded_cli_run):
    from mlflow.tracking import MlflowClient

    result, uri = recorded_cli_run.result, recorded_cli_run.uri
    assert result.returncode == 0, result.stderr
    _, runs = runs_of(uri)
    run_id = runs[0].info.run_id
    assert f"MLflow model runs:/{run_id}/model, registered as models:/tio2_cli/1" in result.stdout
    assert MlflowClient(uri).get_model_version("tio2_cli", "1").run_id == run_id


def test_the_config_shown_and_stored_is_the_one_run_and_a_given_test_set_is_the_test_set(tmp_path):
    """``data.path`` naming other data drops the data option's name and references, and ``data.test_path`` makes the
    default ``data.testpercent`` 0, in the composition itself: ``--cfg job``, ``.hydra/config.yaml`` and the run's
    ``config.yaml`` say the same; a ``data.testpercent`` typed with ``data.test_path`` is still refused."""
    from omegaconf import OmegaConf

    own = [a for a in FAST if not a.startswith(("data.testpercent", "data.E_atomic"))]
    own += ["normalization.E_atomic={O: -432.503149303, Ti: -1604.604515075}",
            f"data.test_path={sorted(SMALL.glob('*.xsf'))[0]}", "iterations=1", "tracking.enabled=false"]
    shown = run_cli("train", *own, "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    data = OmegaConf.create(shown.stdout).data
    assert (data.name, data.E_atomic, data.testpercent) == (None, None, 0)
    result = run_cli("train", *own, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml").data == data
    ran = OmegaConf.load(tmp_path / "run" / "config.yaml").data
    assert (ran.name, ran.E_atomic, ran.testpercent) == ("tio2-small", None, 0)
    typed = run_cli("train", *own, "data.testpercent=10", "hydra.run.dir=typed", cwd=tmp_path)
    assert typed.returncode == 2 and typed.stderr.startswith("aenet_exp: error: data.testpercent: is 10.0, but data.test_path")


def test_a_requeued_command_line_resumes_and_fewer_iterations_are_refused(tmp_path):
    """A SLURM requeue repeats its command line with ``resume=``; resuming to fewer epochs than done says so; a run
    trained untracked stays untracked."""
    line = [*FAST, "force=subsampled", "tracking.enabled=false", "hydra.run.dir=run"]
    assert run_cli("train", *line, "iterations=2", cwd=tmp_path).returncode == 0
    again = run_cli("train", *line, "iterations=3", "resume=run", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    fewer = run_cli("train", *line, "iterations=1", "resume=run", cwd=tmp_path)
    assert fewer.returncode == 2 and fewer.stderr.count("\n") == 1, fewer.stderr
    assert "iterations: is 1, but the run in run has trained 3 epochs" in fewer.stderr
    untracked = run_cli("train", "iterations=4", "resume=run", cwd=tmp_path)  # tracking.enabled: its default, true
    assert untracked.returncode == 0 and "is not tracked in MLflow" in untracked.stderr, untracked.stderr
    assert not (tmp_path / "outputs").exists()  # no store made for the resumed epochs alone
