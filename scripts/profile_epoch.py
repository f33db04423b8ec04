"""Per-batch profile of ``experiment=tio2_fast`` epochs: ms per batch by phase, top functions and operators, syncs.

Builds the ``tio2_fast`` training on ``shared/data/tio2-1000`` the way ``run_training`` does (data,
force supervision, potential, trainer, normalisation; no callbacks, no MLflow), trains ``--warmup``
epochs (caches fill), then:

1. ``--epochs`` epochs with the phase timer off: seconds per epoch (median), ms per training batch
   (median over epochs of (epoch − test evaluation) / batches), and the process's CPU ms per training
   batch (all threads; less disturbed than wall time by other jobs on a shared machine);
2. the same number with ``tracking.timing`` on: ms per batch split into the timer's phases (data,
   featurize, forward, backward, optimizer) and "other" (untimed Python: errors, metrics, plans);
3. one epoch under ``torch.profiler`` (CPU): operators per batch, ``aten::item`` calls per batch (each
   a host sync on an accelerator: ``float(tensor)``, ``.item()``), top operators by self time;
4. one epoch under ``cProfile``: top Python functions by self time, and the ``tolist``/``numpy``/``cpu``
   calls per batch (host copies).

``--repeat R`` repeats step 1 R times (fresh epochs each time) and reports the median, as timings on a
shared machine vary. ``--metrics-out FILE`` writes every epoch's non-timing metrics as exact floats
(``float.hex``) so that two code versions can be compared bit for bit (``--compare A B``).

Usage::

    python scripts/profile_epoch.py [--shared PATH] [--warmup 3] [--epochs 5] [--repeat 3] [--top 15]
        [--metrics-out FILE] [overrides ...]
    python scripts/profile_epoch.py --compare A.json B.json
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from benchlib import DEFAULT_SHARED, bench_main, compose_train, machine_description

EXPERIMENT = ("experiment=tio2_fast", "tracking.enabled=false", "tracking.show_progress=false")
HOST_COPIES = ("tolist", "numpy", "cpu", "item", "__float__")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared folder (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="epochs before anything is measured (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per measurement (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the untimed measurement (default: %(default)s)")
    parser.add_argument("--top", type=int, default=15, help="rows of the top-functions tables (default: %(default)s)")
    parser.add_argument("--metrics-out", type=Path, default=None, help="write every epoch's metrics (float.hex) here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two --metrics-out files")
    parser.add_argument("--one", metavar="JSON", help=argparse.SUPPRESS)  # bench_main's child entry (unused here)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (after the experiment's)")
    return parser.parse_args(argv)


def build(overrides: list[str]):
    """The tio2_fast trainer, normalised, as :func:`aenet_exp.build.training.train_here` builds it."""
    import torch

    from aenet_exp.training.distributed import SINGLE
    from aenet_exp.training.precision import resolve_device, resolve_dtype
    from aenet_exp.build.training import (
        FORCE_SAMPLING_SEED_OFFSET,
        build_potential,
        build_trainer,
        normalization_settings,
        prepared_data,
        section,
    )
    from aenet_exp.training.run import normalize
    from aenet_exp.training.supervision import ForceSupervision

    cfg = compose_train(overrides)
    if cfg.data.name is None:
        cfg.data.name = "tio2"
    device = resolve_device(cfg.precision.device)
    dtype = resolve_dtype(cfg.precision.dtype, device)
    data = prepared_data(cfg)
    supervision = ForceSupervision(
        **section(cfg, "force"), candidates=data.train[data.columns.has_forces[data.train]],
        seed=cfg.seed + FORCE_SAMPLING_SEED_OFFSET,
    )
    torch.manual_seed(cfg.seed)
    potential = build_potential(cfg, data.species, dtype).to(device)
    trainer = build_trainer(cfg, data, potential, supervision, device, SINGLE)
    normalize(trainer, data, normalization_settings(cfg), fresh=True)
    return cfg, trainer


class Epochs:
    """Runs the trainer's epochs in order, counting batches and keeping every epoch's metrics.

    Each epoch's metrics gain ``cpu/train_s``: the process's CPU seconds (all threads) of its training
    batches, test evaluation excluded; on a machine shared with other jobs, less disturbed than wall time.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.next = 0
        self.batches = 0
        self.metrics: list[dict[str, float]] = []
        self.eval_cpu = 0.0
        evaluate = trainer.test_metrics

        def timed_evaluation():
            start = time.process_time()
            try:
                return evaluate()
            finally:
                self.eval_cpu += time.process_time() - start

        trainer.test_metrics = timed_evaluation

    def _count(self) -> None:
        self.batches += 1

    def run(self, n: int) -> tuple[list[dict[str, float]], int]:
        """``n`` epochs: their metrics, and the training batches they stepped."""
        before, start = self.batches, len(self.metrics)
        for _ in range(n):
            self.eval_cpu, cpu_start = 0.0, time.process_time()
            metrics = self.trainer.epoch(self.next, after_batch=self._count)
            metrics["cpu/train_s"] = time.process_time() - cpu_start - self.eval_cpu
            self.metrics.append(metrics)
            self.next += 1
        return self.metrics[start:], self.batches - before


def per_batch_ms(metrics: list[dict[str, float]], batches: int) -> list[float]:
    """ms per training batch of each epoch (the epoch less its test evaluation)."""
    per_epoch = batches / len(metrics)
    return [1000 * (m["time/epoch_s"] - m["time/eval_s"]) / per_epoch for m in metrics]


def phase_table(metrics: list[dict[str, float]], batches: int) -> list[tuple[str, float]]:
    """(phase, ms per batch, median over epochs) for the timer's phases, "other" and "test evaluation"."""
    from aenet_exp.training.timing import PHASES

    per_epoch = batches / len(metrics)
    rows = []
    for phase in PHASES:
        rows.append((phase, statistics.median(1000 * m[f"time/{phase}_s"] / per_epoch for m in metrics)))
    other = [1000 * (m["time/epoch_s"] - m["time/eval_s"] - sum(m[f"time/{p}_s"] for p in PHASES)) / per_epoch
             for m in metrics]
    rows.append(("other (untimed Python)", statistics.median(other)))
    rows.append(("= training batch", statistics.median(per_batch_ms(metrics, batches))))
    rows.append(("test evaluation (per epoch, ms)", statistics.median(1000 * m["time/eval_s"] for m in metrics)))
    return rows


def torch_profile(epochs: Epochs, top: int) -> str:
    """One epoch under torch.profiler (CPU): operators and ``aten::item`` per batch, top operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _, batches = epochs.run(1)
    averages = prof.key_averages()
    ops = sum(e.count for e in averages if e.key.startswith("aten::"))
    items = sum(e.count for e in averages if e.key in ("aten::item",))
    lines = [f"torch.profiler, 1 epoch, {batches} batches: {ops / batches:.0f} aten operators per batch, "
             f"{items / batches:.1f} aten::item (host syncs on an accelerator) per batch (test evaluation included)"]
    lines.append(averages.table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=50))
    return "\n".join(lines)


def python_profile(epochs: Epochs, top: int) -> str:
    """One epoch under cProfile: top functions by self time and host copies per batch."""
    profiler = cProfile.Profile()
    profiler.enable()
    _, batches = epochs.run(1)
    profiler.disable()
    stats = pstats.Stats(profiler)
    copies = {}
    for (_, _, name), (_, calls, *_rest) in stats.stats.items():
        for wanted in HOST_COPIES:
            if name in (f"<method '{wanted}' of 'torch._C.TensorBase' objects>", f"<method '{wanted}' of 'torch._C._TensorBase' objects>"):
                copies[wanted] = copies.get(wanted, 0) + calls
    text = io.StringIO()
    stats.stream = text
    stats.sort_stats("tottime").print_stats(top)
    body = "\n".join(line for line in text.getvalue().splitlines() if line.strip())
    counted = ", ".join(f"{name} {n / batches:.1f}" for name, n in sorted(copies.items())) or "none"
    return f"cProfile, 1 epoch, {batches} batches; tensor → host calls per batch (test evaluation included): {counted}\n{body}"


def exact(metrics: list[dict[str, float]]) -> list[dict[str, str]]:
    """Every epoch's non-timing metrics as ``float.hex`` strings."""
    return [{k: float(v).hex() for k, v in m.items() if not k.startswith(("time/", "cpu/"))} for m in metrics]


def compare(a: Path, b: Path) -> int:
    """Compare two ``--metrics-out`` files: bitwise, else the largest relative difference."""
    first, second = json.loads(a.read_text()), json.loads(b.read_text())
    if first == second:
        print(f"bitwise equal: {len(first)} epochs, {len(first[0])} metrics each")
        return 0
    worst = 0.0
    for epoch, (x, y) in enumerate(zip(first, second)):
        for key in sorted(set(x) | set(y)):
            if key not in x or key not in y:
                print(f"epoch {epoch}: {key} only in one file")
                continue
            u, v = float.fromhex(x[key]), float.fromhex(y[key])
            if u != v:
                rel = abs(u - v) / max(abs(u), abs(v))
                worst = max(worst, rel)
                print(f"epoch {epoch}: {key} {u!r} != {v!r} (relative {rel:.2e})")
    print(f"largest relative difference: {worst:.2e}")
    return 1


def benchmark(args: argparse.Namespace, tarball: Path) -> int:
    import torch

    overrides = [*EXPERIMENT, f"data.path='{tarball}'", *args.overrides]
    print(machine_description(), flush=True)
    print(f"Overrides: {' '.join(overrides)}")
    start = time.perf_counter()
    cfg, trainer = build(overrides)
    print(f"Built in {time.perf_counter() - start:.1f} s: {len(trainer.train_idx)} training structures, batch "
          f"{cfg.optimizer.batchsize}, dtype {trainer.dtype}, threads {torch.get_num_threads()}, "
          f"caches kept: {','.join(trainer.source.kept) or 'none'}", flush=True)
    epochs = Epochs(trainer)
    start = time.perf_counter()
    epochs.run(args.warmup)
    print(f"Warm-up: {args.warmup} epochs in {time.perf_counter() - start:.1f} s", flush=True)

    trainer.timer.enabled = False
    epoch_s, batch_ms, cpu_ms = [], [], []
    for _ in range(args.repeat):
        metrics, batches = epochs.run(args.epochs)
        epoch_s.append(statistics.median(m["time/epoch_s"] for m in metrics))
        batch_ms.append(statistics.median(per_batch_ms(metrics, batches)))
        cpu_ms.append(statistics.median(1000 * m["cpu/train_s"] * args.epochs / batches for m in metrics))
    print(f"\nTimer off, {args.repeat} × {args.epochs} epochs: s/epoch {statistics.median(epoch_s):.4f} "
          f"(medians {', '.join(f'{s:.4f}' for s in epoch_s)}); ms per training batch {statistics.median(batch_ms):.2f} "
          f"(medians {', '.join(f'{s:.2f}' for s in batch_ms)}); CPU ms per training batch {statistics.median(cpu_ms):.2f} "
          f"(medians {', '.join(f'{s:.2f}' for s in cpu_ms)}); {batches // args.epochs} batches per epoch")

    trainer.timer.enabled = True
    trainer.timer.take()
    metrics, batches = epochs.run(args.epochs)
    print(f"\nTimer on, {args.epochs} epochs: ms per training batch by phase (median over epochs)")
    for name, value in phase_table(metrics, batches):
        print(f"  {name:34s} {value:8.2f}")
    trainer.timer.enabled = False

    print()
    print(torch_profile(epochs, args.top))
    print()
    print(python_profile(epochs, args.top))
    if args.metrics_out is not None:
        args.metrics_out.write_text(json.dumps(exact(epochs.metrics), indent=0))
        print(f"\n{len(epochs.metrics)} epochs' metrics written to {args.metrics_out}")
    trainer.source.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    return bench_main(args, benchmark)


if __name__ == "__main__":
    sys.exit(main())
