"""Training in this process: a recording callback, a run of a composed config, a call counter."""

from __future__ import annotations

from aenet_exp.build.training import run_training
from aenet_exp.training.events import Callback


class Recorder(Callback):
    """A callback keeping what training reports."""

    def __init__(self):
        self.config, self.facts, self.epochs, self.result, self.error = None, None, [], None, None

    def on_start(self, config, facts):
        self.config, self.facts = config, facts

    def on_epoch_end(self, epoch, metrics):
        self.epochs.append(dict(metrics))

    def on_end(self, result):
        self.result = result

    def on_failure(self, error):
        self.error = error


def train(cfg, tmp_path):
    """Run ``cfg`` into ``tmp_path``; the final metrics and a :class:`Recorder` of the run."""
    recorder = Recorder()
    metrics = run_training(cfg, tmp_path, [recorder])
    return metrics, recorder


class Counter:
    """Wraps ``target``, counting its calls."""

    def __init__(self, target):
        self.target, self.calls = target, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.target(*args, **kwargs)
