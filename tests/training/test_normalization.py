"""normalization.* (training/normalization.py): energy shift and scale, feature statistics, targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aenet_exp.build.training import run_training
from aenet_exp.config.validation import ConfigError
from aenet_exp.data import read_structures
from aenet_exp.model import Potential
from aenet_exp.model.potential import MODEL_FILE
from aenet_exp.training.normalization import energy_normalization

from helpers import E_ATOMIC, SMALL, train


def test_energy_normalization_rules():
    e = np.array([-3.0, -1.0, 1.0])
    assert energy_normalization(e, None, None, True) == (-1.0, 2.0)
    assert energy_normalization(e, 0.0, None, True) == (0.0, 3.0)  # shift given: scale computed from it
    assert energy_normalization(e, None, 5.0, True) == (-1.0, 5.0)  # scale given: shift computed
    assert energy_normalization(e, 0.5, 4.0, True) == (0.5, 4.0)
    assert energy_normalization(e, None, None, False) == (0.0, 1.0)


def test_given_shift_and_scaling_reach_the_model(fast_config, tmp_path):
    run_training(fast_config("normalization.E_shift=-2.5", "iterations=1"), tmp_path / "shift")
    model = Potential.load(tmp_path / "shift" / MODEL_FILE)
    assert float(model.energy_shift) == pytest.approx(-2.5)
    assert float(model.energy_scale) > 0
    run_training(fast_config("normalization.E_scaling=0.75", "iterations=1"), tmp_path / "scale")
    assert float(Potential.load(tmp_path / "scale" / MODEL_FILE).energy_scale) == pytest.approx(0.75)


def test_normalization_switches(fast_config, tmp_path):
    run_training(fast_config("normalization.features=false", "normalization.energy=false", "iterations=1"), tmp_path / "off")
    model = Potential.load(tmp_path / "off" / MODEL_FILE)
    assert float(model.energy_shift) == 0 and float(model.energy_scale) == 1
    assert torch.all(model.feature_mean == 0) and torch.all(model.feature_std == 1)
    run_training(fast_config("iterations=1"), tmp_path / "on")
    fitted = Potential.load(tmp_path / "on" / MODEL_FILE)
    assert torch.any(fitted.feature_mean != 0) and float(fitted.energy_scale) != 1


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_feature_stats_from_file(fast_config, tmp_path, suffix):
    n = 2 * (5 + 3)
    mean, std = np.linspace(0, 1, n), np.linspace(1, 2, n)
    path = tmp_path / f"stats{suffix}"
    if suffix == ".npz":
        np.savez(path, mean=mean, std=std)
    else:
        path.write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist()}))
    run_training(fast_config(f"normalization.feature_stats={path}", "iterations=1", "precision=float64"), tmp_path)
    model = Potential.load(tmp_path / MODEL_FILE)
    np.testing.assert_allclose(model.feature_mean.numpy(), mean)
    np.testing.assert_allclose(model.feature_std.numpy(), std)


def test_feature_stats_of_wrong_length_names_key(fast_config, tmp_path):
    path = tmp_path / "stats.npz"
    np.savez(path, mean=np.zeros(3), std=np.ones(3))
    with pytest.raises(ConfigError, match="^normalization.feature_stats: .*16 features"):
        run_training(fast_config(f"normalization.feature_stats={path}"), tmp_path)


def test_energy_target_changes_the_fitted_shift(fast_config, tmp_path):
    run_training(fast_config("iterations=1"), tmp_path / "c")
    run_training(fast_config("iterations=1", "normalization.energy_target=total"), tmp_path / "t")
    cohesive = Potential.load(tmp_path / "c" / MODEL_FILE)
    total = Potential.load(tmp_path / "t" / MODEL_FILE)
    assert float(cohesive.energy_shift) > -10 > float(total.energy_shift)  # eV/atom: cohesive ~ -8, total ~ -800
    assert cohesive.atomic_energies.tolist() == pytest.approx([E_ATOMIC["O"], E_ATOMIC["Ti"]])
    assert total.atomic_energies.abs().sum() == 0


def test_float32_targets_keep_per_atom_precision():
    from aenet_exp.training.columns import Columns
    from aenet_exp.training.normalization import Labels

    columns = Columns.of_structures(read_structures(SMALL))
    shift, scale = -8.0, 0.5
    exact = Labels.of(columns, E_ATOMIC, shift, scale, torch.float64, torch.device("cpu")).target.numpy()
    single = Labels.of(columns, E_ATOMIC, shift, scale, torch.float32, torch.device("cpu")).target.numpy()
    # totals reach -20,000 eV: a float32 difference of totals would be off by ~1e-3 eV/atom
    assert np.abs(single - exact).max() * scale < 1e-6


@pytest.mark.parametrize("content", [b"[1, 2, 3]", b'{"mean": {"a": 1}, "std": 2}', b"PK\x03\x04 not a zip"])
def test_malformed_feature_stats_file_names_key(fast_config, tmp_path, content):
    path = tmp_path / ("stats.npz" if content.startswith(b"PK") else "stats.json")
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="^normalization.feature_stats: "):
        run_training(fast_config(f"normalization.feature_stats={path}"), tmp_path)



def synthetic_columns(compositions: list[list[int]], references: list[float], noise: float = 0.0):
    """Columns of structures with these species counts (A, B, C) and energies Σ count·E_s (+ noise per atom)."""
    from aenet_exp.training.columns import Columns

    counts = np.array(compositions)
    n_atoms = counts.sum(axis=1)
    rng = np.random.default_rng(0)
    energy = counts @ np.array(references) + noise * n_atoms * rng.standard_normal(len(counts))
    return Columns(energy, n_atoms, np.ones(len(counts), bool), np.zeros(len(counts)), ("A", "B", "C"), counts)


COMPOSITIONS = [[1, 2, 0], [2, 1, 3], [4, 0, 1], [1, 1, 1], [0, 3, 2], [3, 2, 2]]
KNOWN = [-13.6, -1025.3, -2035.6]


def test_fitted_references_recover_the_energies_they_made():
    from aenet_exp.training.normalization import fit_reference_energies

    fitted, rmse = fit_reference_energies(synthetic_columns(COMPOSITIONS, KNOWN), ["A", "B", "C"], {})
    assert [fitted[s] for s in "ABC"] == pytest.approx(KNOWN, rel=1e-10, abs=1e-10)
    assert rmse < 1e-10
    held, _ = fit_reference_energies(synthetic_columns(COMPOSITIONS, KNOWN), ["A", "B", "C"], {"A": -13.6})
    assert held["A"] == -13.6 and [held["B"], held["C"]] == pytest.approx(KNOWN[1:], rel=1e-10)
    _, noisy = fit_reference_energies(synthetic_columns(COMPOSITIONS, KNOWN, noise=0.01), ["A", "B", "C"], {})
    assert 1e-4 < noisy < 0.02  # eV/atom


def test_references_the_data_cannot_tell_apart_are_named():
    from aenet_exp.training.normalization import fit_reference_energies

    proportional = [[1, 1, 2], [3, 2, 4], [0, 3, 6], [2, 1, 2]]  # B and C always 1:2
    with pytest.raises(ConfigError, match=r"^normalization.E_atomic: fit: .* tell apart .* of \['B', 'C'\]"):
        fit_reference_energies(synthetic_columns(proportional, KNOWN), ["A", "B", "C"], {})
    fitted, _ = fit_reference_energies(synthetic_columns(proportional, KNOWN), ["A", "B", "C"], {"B": KNOWN[1]})
    assert [fitted[s] for s in "ABC"] == pytest.approx(KNOWN, rel=1e-10)


def test_a_run_with_fitted_references_logs_and_saves_them(fast_config, tmp_path):
    from aenet_exp.data import Structure
    from aenet_exp.data.hdf5 import write_database

    rng = np.random.default_rng(1)
    structures = []
    for k, (a, b, c) in enumerate(COMPOSITIONS * 3):
        symbols = ["H"] * a + ["C"] * b + ["O"] * c
        positions = np.array([[2.5 * i, 0.3 * (i % 2), 0.0] for i in range(len(symbols))])
        energy = a * KNOWN[0] + b * KNOWN[1] + c * KNOWN[2] + 0.05 * rng.standard_normal() * len(symbols)
        structures.append(Structure(symbols, positions, energy=energy, source="synthetic", frame=k))
    write_database(structures, tmp_path / "synthetic.h5")
    _, rec = train(fast_config(f"data.database={tmp_path / 'synthetic.h5'}", "normalization.E_atomic=fit",
                               "data.testpercent=20"), tmp_path / "run")
    fitted = {s: float(rec.facts[f"normalization.fitted_E_atomic.{s}"]) for s in "CHO"}
    assert [fitted["H"], fitted["C"], fitted["O"]] == pytest.approx(KNOWN, abs=0.2)
    assert 0 < rec.result.metrics["final/E_atomic_fit_rmse"] < 0.2
    saved = Potential.load(tmp_path / "run" / MODEL_FILE)
    assert saved.atomic_energies.tolist() == pytest.approx([fitted[s] for s in saved.species], rel=1e-6)
