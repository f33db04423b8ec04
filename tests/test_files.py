"""The one atomic writer and the one weights-only reader (files.py)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from aenet_exp.build.training import run_training
from aenet_exp.data.hdf5 import build_database
from aenet_exp.errors import UnreadableFile, UserError
from aenet_exp.files import load_tensors, remove_stale_temporaries, temporary_path, write_atomically
from aenet_exp.rundir import CHECKPOINT_FILE, CONFIG_FILE, MODEL_FILE
from aenet_exp.tracking.observer import MlflowObserver
from aenet_exp.training.persist import DiskCache

from helpers import FAST, SMALL, compose_train


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_written_files_get_the_umask_mode_also_in_the_artifact_store(tmp_path, umask_022):
    """Collaborators on a shared store can read the model, checkpoint and config (not 0600)."""
    cfg = compose_train(*FAST, f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db", "tracking.log_model=false")
    run_training(cfg, tmp_path / "run", [MlflowObserver(OmegaConf.to_container(cfg.tracking), run_dir=tmp_path / "run")])
    for name in (MODEL_FILE, CHECKPOINT_FILE, CONFIG_FILE):
        assert mode(tmp_path / "run" / name) == 0o644, name
    artifacts = [p for p in (tmp_path / "store" / "mlartifacts").rglob("*") if p.is_file()]
    assert {p.name for p in artifacts} >= {MODEL_FILE, CONFIG_FILE, CHECKPOINT_FILE}
    assert {mode(p) for p in artifacts} == {0o644}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "file.txt"
    write_atomically(target, "old")

    def broken(temporary):
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_a_write_the_disk_refuses_is_one_user_error_naming_the_file(tmp_path):
    target = tmp_path / "file.txt"
    write_atomically(target, "old")

    def full(temporary):
        temporary.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(UserError, match=f"^cannot write {target}: No space left on device$"):
        write_atomically(target, full)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporaries_of_dead_processes_are_removed_by_the_next_writer_there(tmp_path):
    (tmp_path / "cache").mkdir()
    dead, alive = dead_pid(), os.getppid()
    stale = [tmp_path / f".db.h5.{dead}-00aa.tmp", tmp_path / "run" / f".checkpoint.pt.{dead}-bb11.tmp",
             tmp_path / "cache" / "graphs" / f".x.npz.{dead}-cc22.tmp"]
    live = tmp_path / f".other.h5.{alive}-dd33.tmp"
    for path in [*stale, live]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    build_database(SMALL, tmp_path / "db.h5")
    run_training(compose_train(*FAST, "tracking.enabled=false"), tmp_path / "run")
    DiskCache(tmp_path / "cache", "graphs", "settings")
    assert not any(p.exists() for p in stale)
    assert live.exists()  # its writer may still be writing
    assert remove_stale_temporaries(tmp_path) == []


def test_a_temporary_folder_of_a_dead_process_is_removed_too(tmp_path):
    """``export`` writes a hidden folder beside its ``out=`` (in a run folder by default) before swapping it in."""
    stale = tmp_path / f".aenet.{dead_pid()}-ee44.tmp"
    (stale / "member_000").mkdir(parents=True)
    (stale / "member_000" / "O.pytorch.nn.ascii").write_text("partial")
    assert remove_stale_temporaries(tmp_path) == [stale] and not stale.exists()


def test_temporary_names_say_their_process():
    assert f".potential.pt.{os.getpid()}-" in temporary_path(SMALL / "potential.pt").name


@pytest.mark.parametrize(
    "content", [b"", os.urandom(64), b"\x80\x04\x95not-a-pickle", None], ids=["empty", "random", "truncated", "list"]
)
def test_unreadable_tensor_files_are_one_user_error(tmp_path, content):
    path = tmp_path / "state.pt"
    if content is None:
        torch.save([np.zeros(2).tolist()], path)
    else:
        path.write_bytes(content)
    with pytest.raises(UnreadableFile, match=f"^{path}: not a checkpoint"):
        load_tensors(path, "a checkpoint")
