"""A training composed by build/training.py and sequenced by training/run.py: a run reports, writes its files,
fine-tunes, refuses what it cannot do."""

from __future__ import annotations

import pytest
import torch

from aenet_exp.build.training import run_training
from aenet_exp.config.validation import ConfigError, validate
from aenet_exp.data import read_structures
from aenet_exp.model import Potential
from aenet_exp.model.potential import MODEL_FILE

from helpers import SMALL, train


def test_watched_metrics_must_exist_in_the_run(fast_config, tmp_path):
    with pytest.raises(ConfigError, match="^early_stopping.metric: watches test/loss, but this run has no test"):
        train(fast_config("early_stopping.patience=2", "data.testpercent=0"), tmp_path)
    with pytest.raises(ConfigError, match="^scheduler.metric: watches train/force_rmse, but forces are not trained"):
        train(fast_config("scheduler=plateau", "scheduler.metric=train/force_rmse"), tmp_path)
    with pytest.raises(ConfigError, match="^scheduler.metric: expected one of"):
        validate(fast_config("scheduler=plateau", "scheduler.metric=test/accuracy"))
    with pytest.raises(ConfigError, match=r"^ema.decay: expected a decay in \(0, 1\)"):
        validate(fast_config("ema.decay=1.0"))


def test_run_reports_epochs_and_writes_model(fast_config, tmp_path):
    cfg = fast_config("iterations=3", "precision=float64")
    metrics, rec = train(cfg, tmp_path)
    assert len(rec.epochs) == 3
    assert {"train/loss", "train/energy_rmse", "test/energy_rmse", "time/epoch_s"} <= set(rec.epochs[0])
    assert rec.facts["dataset.structures"] == 16 and rec.facts["dataset.test_structures"] == 4
    assert rec.config["optimizer"]["mu"] == 0.001
    model = Potential.load(tmp_path / MODEL_FILE)
    assert model.species == ["O", "Ti"] and model.descriptor.dtype == torch.float64
    assert (tmp_path / "config.yaml").is_file()
    assert metrics["final/test/energy_rmse"] == pytest.approx(rec.epochs[-1]["test/energy_rmse"], rel=1e-9)


def test_save_energies_and_forces_files(fast_config, tmp_path):
    run_training(fast_config("tracking.save_energies=true", "tracking.save_forces=true", "precision=float64"), tmp_path)
    for kind in ("energies", "forces"):
        for split_name in ("train", "test"):
            assert (tmp_path / f"{kind}.{split_name}.predicted").is_file()
    rows = (tmp_path / "energies.test.predicted").read_text().splitlines()
    assert rows[0].startswith("# source frame n_atoms E_ref_eV E_pred_eV") and len(rows) == 1 + 4
    source, frame, n, e_ref, e_pred, ref_pa, pred_pa = rows[1].split()
    assert source.endswith(".xsf") and int(frame) == 0
    assert float(e_ref) / int(n) == pytest.approx(float(ref_pa)) and float(e_pred) / int(n) == pytest.approx(float(pred_pa))
    forces = (tmp_path / "forces.train.predicted").read_text().splitlines()
    assert len(forces) == 1 + sum(s.n_atoms for s in read_structures(SMALL)) - sum(
        int(r.split()[2]) for r in rows[1:]
    )
    assert len(forces[1].split()) == 10


def test_files_not_written_unless_asked(fast_config, tmp_path):
    run_training(fast_config(), tmp_path)
    assert not list(tmp_path.glob("*.predicted"))


def test_network_for_a_species_not_in_the_data_is_refused(fast_config, tmp_path):
    with pytest.raises(ConfigError, match=r"^model.per_species: species \['Tl'\]"):
        run_training(fast_config("+model.per_species.Tl={hidden: [3], activations: [tanh]}"), tmp_path)


def test_init_from_starts_from_trained_weights(fast_config, tmp_path):
    run_training(fast_config("iterations=3", "precision=float64"), tmp_path / "a")
    trained = Potential.load(tmp_path / "a" / MODEL_FILE)
    metrics, rec = train(fast_config(f"init_from={tmp_path / 'a'}", "iterations=1", "precision=float64",
                                     "optimizer.mu=1e-30"), tmp_path / "b")
    tuned = Potential.load(tmp_path / "b" / MODEL_FILE)
    assert float(tuned.energy_shift) == float(trained.energy_shift)
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[name], value, rtol=1e-12, atol=1e-20)


@pytest.mark.parametrize("override, named", [
    ("descriptor.rad_order=6", r"descriptor.rad_order is 6 here, 4 in the model"),
    ("model.hidden=[5]", r"model.hidden is \{'O': \[5\], 'Ti': \[5\]\} here, \{'O': \[4\], 'Ti': \[4\]\} in the model"),
    ("+model.per_species.O={hidden: [4], activations: [relu]}", r"model.activations is \{'O': \['relu'\]"),
])
def test_init_from_refuses_another_descriptor_or_layout(fast_config, tmp_path, override, named):
    """The loaded model is what trains: a descriptor or network layout differing from it would be recorded but not
    trained, so it is refused, naming the key and both values."""
    run_training(fast_config("iterations=1"), tmp_path / "a")
    with pytest.raises(ConfigError, match=rf"^init_from: .*{named}"):
        run_training(fast_config(f"init_from={tmp_path / 'a'}", override), tmp_path / "b")


def test_output_directory_that_cannot_be_written_fails_first(fast_config, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="^hydra.run.dir: cannot write"):
        run_training(fast_config(), blocker / "out")

