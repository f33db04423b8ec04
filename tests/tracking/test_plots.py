"""Learning-curve and parity plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from aenet_exp.tracking import (
    learning_curve_png,
    parity_png,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_learning_curve_png(tmp_path: Path) -> None:
    history = {
        "train/energy_rmse": [0.1, 0.01, 0.005],
        "test/energy_rmse": [0.12, 0.02, float("nan")],
        "train/force_rmse": [1.0, 0.5, 0.3],
        "test/force_rmse": [1.1, 0.6, 0.4],
        "train/loss": [3.0, 1.0, 0.5],
    }
    learning_curve_png(history, tmp_path / "curves" / "learning_curve.png")
    assert_png(tmp_path / "curves" / "learning_curve.png")
    with pytest.raises(ValueError, match="RMSE"):
        learning_curve_png({"train/loss": [1.0]}, tmp_path / "none.png")


@pytest.mark.parametrize("with_forces", [True, False])
def test_parity_png(tmp_path: Path, with_forces: bool) -> None:
    energies = {"train": ([-3.0, -2.9, -2.8], [-3.01, -2.9, -2.79]), "test": ([-2.95], [-2.96])}
    forces = {
        "train": ([[0.1, -0.2, 0.3]], [[0.11, -0.19, 0.28]]),
        "test": ([[0.0, 0.0, 0.0]], [[0.01, 0.01, 0.01]]),
    }
    parity_png(tmp_path / "parity.png", energies, forces if with_forces else None)
    assert_png(tmp_path / "parity.png")

