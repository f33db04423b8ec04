"""The epoch loop's callbacks (training/callbacks.py): early stopping, timing."""

from __future__ import annotations

import pytest

from helpers import train

F64 = ("precision=float64",)


def test_early_stopping_stops_and_keeps_the_best_model(fast_config, tmp_path):
    metrics, rec = train(fast_config(*F64, "iterations=10", "early_stopping.patience=2", "early_stopping.min_delta=1e9",
                                     "early_stopping.metric=test/energy_rmse"), tmp_path)
    assert len(rec.epochs) == 3  # epoch 1 is the best; two epochs without improvement stop the run
    assert metrics["final/best_epoch"] == 1
    assert metrics["final/test/energy_rmse"] == pytest.approx(rec.epochs[0]["test/energy_rmse"], rel=1e-10)
    assert metrics["final/test/energy_rmse"] != pytest.approx(rec.epochs[-1]["test/energy_rmse"], rel=1e-6)


def test_timing_reports_every_phase(fast_config, tmp_path, capsys):
    _, rec = train(fast_config("tracking.timing=true", "force=full"), tmp_path)
    for phase in ("data", "featurize", "forward", "backward", "optimizer"):
        assert rec.epochs[-1][f"time/{phase}_s"] > 0
    assert "per_epoch_s" in capsys.readouterr().out
    _, quiet = train(fast_config(), tmp_path / "quiet")
    assert "time/data_s" not in quiet.epochs[-1]

