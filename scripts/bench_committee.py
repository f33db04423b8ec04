"""Seconds per epoch of a committee (``committee=deep``) of K = 1, 5, 10 members against K single runs, on TiO2.

Trains on ``shared/data/tio2-1000/dir_xsf.tar.gz`` with the settings of ``experiment=tio2_fast`` (descriptor
``published``, 2×5 tanh networks, AdamW, batches of 32, α = 0.25 on a fixed 25 % of the structures,
``caching.features_for_force`` and ``caching.derivatives``, weight averaging), ``--epochs`` epochs each:

 - ``committee=deep committee.calibrate=false committee.members=K`` for each K of ``--members`` (default 1, 5, 10):
   the K members' networks stacked and trained in one batched pass over shared features and feature Jacobians;
 - ``--singles`` (default 5) separate single-network runs (``committee=none``, seeds 0, 1, ...), each actually
   trained: their s/epoch are added up, which is what K independent trainings, one after the other, cost.

Each training runs in a fresh subprocess of this script (``--one``), which stops after the last epoch: the final
predictions of every structure are not part of an epoch and are skipped. s/epoch is the median of ``time/epoch_s``
(training and the test-set evaluation) over the epochs after the first, which fills the caches (its time is
reported apart). Phases are the medians of ``tracking.timing``'s ``time/*_s`` over the same epochs: data (batch
assembly), featurize, forward (energies, and forces through the cached Jacobians), backward, optimizer (step and
weight averaging), eval (test set); "other" is the rest of the epoch (losses, metrics). ``--repeats R`` runs the
whole list R times, interleaved (K = 1, 5, 10, singles, K = 1, ...), and reports the median over repeats, so that
a change of load on a shared machine hits every row alike.

``--profile`` then runs the second epoch of K = 1 and of K = 5 under torch.profiler and prints their operators by
self CPU time (profiled epochs run slower: compare the two tables, not with the s/epoch above).

The goal (issue item 7): K = 5 costs at most 1.5 × K = 1 per epoch.

Usage::

    python scripts/bench_committee.py [--shared PATH] [--epochs 8] [--members 1,5,10] [--singles 5] [--repeats 1]
        [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from benchlib import DEFAULT_SHARED, Recorder, bench_main, compose_train, machine_description, peak_rss_mb, run_child

COMMON = ("experiment=tio2_fast", "normalization.E_atomic={O: -432.503149303, Ti: -1604.604515075}",
          "tracking.enabled=false", "tracking.show_progress=false", "tracking.timing=true",
          "checkpoint.every=100000")
PHASES = ("data", "featurize", "forward", "backward", "optimizer")
GOAL = 1.5  # K = 5 at most this many times K = 1's seconds per epoch
PROFILE_ROWS = 15


class Job(NamedTuple):
    label: str
    overrides: tuple[str, ...]


def jobs(members: Sequence[int], singles: int) -> list[Job]:
    """The committees, then the single runs."""
    committees = [Job(f"K={k}", ("committee=deep", "committee.calibrate=false", f"committee.members={k}"))
                  for k in members]
    return committees + [Job(f"single seed {s}", ("committee=none", f"seed={s}")) for s in range(singles)]


class EpochsDone(Exception):
    """Raised after the last epoch: the final predictions of every structure (minutes on a loaded machine, and
    not part of an epoch) are skipped."""


class StopAfterEpochs(Recorder):
    """Records the epochs and stops after the last; with ``profile``, runs epoch 1 (the second) under torch.profiler
    and keeps its operator table (self CPU time)."""

    def __init__(self, profile: bool = False):
        super().__init__()
        self.profile, self.profiler, self.table = profile, None, None

    def on_epoch_start(self, epoch: int) -> None:
        if self.profile and epoch == 1:
            import torch.profiler

            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.profiler.__enter__()

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        super().on_epoch_end(epoch, metrics)
        if self.profiler is not None and epoch == 1:
            self.profiler.__exit__(None, None, None)
            self.table = self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=PROFILE_ROWS)
            self.profiler = None

    def on_fit_end(self, epochs_done: int) -> None:
        raise EpochsDone


def train_epochs(overrides: list[str], profile: bool = False) -> dict:
    """Train one configuration in this process, its epochs only; per-epoch metrics, the seconds from the start of
    ``run_training`` to the end of the last epoch, the peak RSS (MB). Training's prints go to stderr."""
    import tempfile

    from aenet_exp.build.training import run_training

    cfg = compose_train(overrides)
    recorder = StopAfterEpochs(profile)
    with tempfile.TemporaryDirectory() as output_dir, contextlib.redirect_stdout(sys.stderr):
        start = time.perf_counter()
        with contextlib.suppress(EpochsDone):
            run_training(cfg, output_dir, [recorder])
        wall = time.perf_counter() - start
    return {"epochs": recorder.epochs, "wall_s": wall, "peak_rss_mb": peak_rss_mb(), "profile": recorder.table}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared folder with data/tio2-1000")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of every training, the first (warm-up) included")
    parser.add_argument("--members", default="1,5,10", help="committee sizes K, comma-separated")
    parser.add_argument("--singles", type=int, default=5, help="separate single-network runs (seeds 0, 1, ...)")
    parser.add_argument("--repeats", type=int, default=1, help="run the whole list this many times, interleaved")
    parser.add_argument("--profile", action="store_true", help="then profile the second epoch of K = 1 and K = 5 "
                        "(torch.profiler, operators by self CPU time)")
    parser.add_argument("--profile-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # JSON overrides: train them here, print the report
    return parser.parse_args(argv)


def summary(report: dict) -> dict[str, float]:
    """Medians over the epochs after the first: epoch, eval and phase seconds; the first epoch's seconds."""
    later = report["epochs"][1:] or report["epochs"]
    out = {"epoch": statistics.median(e["time/epoch_s"] for e in later),
           "eval": statistics.median(e["time/eval_s"] for e in later),
           "first": report["epochs"][0]["time/epoch_s"], "wall": report["wall_s"]}
    for phase in PHASES:
        out[phase] = statistics.median(e.get(f"time/{phase}_s", 0.0) for e in later)
    out["other"] = out["epoch"] - out["eval"] - sum(out[p] for p in PHASES)
    return out


def combine(summaries: list[dict[str, float]]) -> dict[str, float]:
    """The median over repeats, key by key."""
    return {key: statistics.median(s[key] for s in summaries) for key in summaries[0]}


def phase_cells(s: dict[str, float]) -> str:
    return " | ".join(f"{s[p]:.3f}" for p in (*PHASES, "eval", "other"))


def benchmark(args: argparse.Namespace, tarball: Path) -> int:
    """Train every job (``--repeats`` times) in a subprocess, then print the table and the verdict."""
    print(machine_description())
    members = [int(k) for k in args.members.split(",")]
    common = [*COMMON, f"data.path={tarball}", f"iterations={args.epochs}"]
    todo = jobs(members, args.singles)
    print(f"\n{args.epochs} epochs per training (the first fills the caches), {args.repeats} repeat(s), data {tarball}\n",
          flush=True)
    results: dict[str, list[dict[str, float]]] = {job.label: [] for job in todo}
    failed = False
    for repeat in range(args.repeats):
        for job in todo:
            report, error = run_child(__file__, ["--one", json.dumps([*common, *job.overrides])])
            if report is None:
                failed = True
                print(f"{job.label} (repeat {repeat + 1}) failed:\n{error}", flush=True)
                continue
            s = summary(report)
            results[job.label].append(s)
            print(f"  {job.label} (repeat {repeat + 1}): {s['epoch']:.3f} s/epoch, first epoch {s['first']:.2f} s, "
                  f"epochs done {s['wall']:.1f} s after the start of run_training", flush=True)
    done = {label: combine(runs) for label, runs in results.items() if runs}
    if "K=1" not in done:
        print("K = 1 failed: no ratios")
        return 1
    base = done["K=1"]["epoch"]
    print(f"\n{machine_description()}\n")
    print("| training | s/epoch | ratio to K=1 | data | featurize | forward | backward | optimizer | eval | other "
          "| first epoch s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in members:
        s = done.get(f"K={k}")
        if s is not None:
            print(f"| committee K = {k} | {s['epoch']:.3f} | {s['epoch'] / base:.2f} | {phase_cells(s)} | {s['first']:.2f} |")
    singles = [done[f"single seed {i}"] for i in range(args.singles) if f"single seed {i}" in done]
    if singles:
        total = {key: sum(s[key] for s in singles) for key in singles[0]}
        print(f"| {len(singles)} single runs (seeds 0–{len(singles) - 1}), summed | {total['epoch']:.3f} | "
              f"{total['epoch'] / base:.2f} | {phase_cells(total)} | {total['first']:.2f} |")
        each = ", ".join(f"{s['epoch']:.3f}" for s in singles)
        print(f"\nsingle runs, s/epoch each: {each}")
    print("\n(phases: medians of time/*_s over the epochs after the first, seconds per epoch)")
    if "K=5" in done:
        ratio = done["K=5"]["epoch"] / base
        print(f"Goal K = 5 ≤ {GOAL} × K = 1 per epoch: {ratio:.2f} × — {'met' if ratio <= GOAL else 'MISSED'}")
        grown = {p: done["K=5"][p] - done["K=1"][p] for p in (*PHASES, "eval", "other")}
        print("growth K=1 → K=5 by phase (s/epoch): " + ", ".join(f"{p} {v:+.3f}" for p, v in grown.items()))
    if args.profile:
        for k in (1, 5):
            overrides = [*common, "committee=deep", "committee.calibrate=false", f"committee.members={k}"]
            report, error = run_child(__file__, ["--profile-one", "--one", json.dumps(overrides)])
            print(f"\ntorch.profiler, the second epoch of K = {k}, top {PROFILE_ROWS} operators by self CPU time:")
            print(report["profile"] if report is not None else f"failed:\n{error}", flush=True)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one is not None:  # the child: epochs only (benchlib.train_one would also predict every structure)
        print(json.dumps(train_epochs(json.loads(args.one), args.profile_one)))
        return 0
    return bench_main(args, benchmark)


if __name__ == "__main__":
    sys.exit(main())
