"""The step loop (training/trainer.py)."""

from __future__ import annotations

from aenet_exp.build.training import run_training


def test_batchsize_sets_steps_per_epoch(fast_config, tmp_path):
    cfg = fast_config("optimizer.batchsize=5", "iterations=1", "precision=float64")
    counted = []
    from aenet_exp.training.features import FeatureSource

    original = FeatureSource._evaluate

    def counting(self, potential, *args, **kwargs):
        out = original(self, potential, *args, **kwargs)
        if potential.training:
            counted.append(len(out.order))
        return out

    FeatureSource._evaluate = counting
    try:
        run_training(cfg, tmp_path)
    finally:
        FeatureSource._evaluate = original
    assert counted == [5, 5, 2]  # 12 training structures

