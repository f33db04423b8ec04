"""Pieces shared by the benchmark scripts: the machine, peak memory, and one measurement per subprocess.

A benchmark runs each measurement in a fresh interpreter (:func:`run_child`), which prints one
JSON line as the last line of its stdout; the peak RSS it reports (:func:`peak_rss_mb`) then
belongs to that measurement alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from aenet_exp.training.events import Callback

DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TIO2 = Path("data/tio2-1000/dir_xsf.tar.gz")  # inside the shared folder


def tio2_tarball(shared: Path) -> Path | None:
    """The TiO2-1000 tarball in the shared folder ``shared``; None, after saying so, when it is absent."""
    tarball = shared / TIO2
    if tarball.is_file():
        return tarball.resolve()
    print(f"Skipping: data set not found at {tarball} (pass --shared PATH to point at the shared folder).")
    return None


def machine_description() -> str:
    """CPU model (``/proc/cpuinfo``), cores, torch version and threads, and the load average now."""
    import torch

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"Machine: {model}, cores = {os.cpu_count()} (usable {usable}), torch {torch.__version__}, "
        f"threads = {torch.get_num_threads()}, Python {platform.python_version()}, load average = {load}"
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (``ru_maxrss``, KiB on Linux; children not included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(script: str | Path, args: Sequence[str]) -> tuple[dict | None, str | None]:
    """Run ``python script *args`` in a fresh interpreter.

    Returns (its last stdout line as JSON, None), or (None, its stderr) when it fails.
    """
    done = subprocess.run([sys.executable, str(Path(script).resolve()), *args], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None, done.stderr.strip() or f"exit status {done.returncode}, no output"
    return json.loads(lines[-1]), None


class Recorder(Callback):
    """Observer keeping the dataset facts, every epoch's metrics and the peak RSS (MB) at each epoch's end."""

    def __init__(self):
        self.facts: dict = {}
        self.epochs: list[dict[str, float]] = []
        self.epoch_rss_mb: list[float] = []

    def on_start(self, config: dict, facts: dict) -> None:
        self.facts = facts

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append(dict(metrics))
        self.epoch_rss_mb.append(peak_rss_mb())


def compose_train(overrides: list[str]):
    """The composed and validated ``train`` config, as the CLI builds it."""
    from hydra import compose, initialize_config_module

    import aenet_exp.config  # noqa: F401  registers the schema
    from aenet_exp.config.validation import validate

    with initialize_config_module("aenet_exp.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    validate(cfg)
    return cfg


def train_one(overrides: list[str]) -> dict:
    """Train one configuration in this process and report it.

    Returns per-epoch metrics (``epochs``), final metrics, ``dataset.*`` facts, the seconds
    ``run_training`` took (``wall_s``: data, statistics, epochs, final predictions, saving),
    the peak RSS at each epoch's end and at the end (MB). Training's own prints go to stderr
    so that stdout carries only the caller's JSON report.
    """
    from aenet_exp.build.training import run_training

    cfg = compose_train(overrides)
    recorder = Recorder()
    with tempfile.TemporaryDirectory() as output_dir, contextlib.redirect_stdout(sys.stderr):
        start = time.perf_counter()
        final = run_training(cfg, output_dir, [recorder])
        wall = time.perf_counter() - start
    facts = {k: v for k, v in recorder.facts.items() if k.startswith("dataset.")}
    return {
        "epochs": recorder.epochs,
        "final": final,
        "facts": facts,
        "wall_s": wall,
        "epoch_peak_rss_mb": recorder.epoch_rss_mb,
        "peak_rss_mb": peak_rss_mb(),
    }


def bench_main(args, benchmark) -> int:
    """A benchmark script's entry: with ``--one`` train those JSON overrides here and print the report (the
    child process of :func:`run_child`); else ``benchmark(args, tarball)`` when the TiO2 data is there."""
    if args.one is not None:
        print(json.dumps(train_one(json.loads(args.one))))
        return 0
    tarball = tio2_tarball(args.shared)
    return benchmark(args, tarball) if tarball is not None else 0
