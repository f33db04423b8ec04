"""Training semantics, each reference parameter changing behaviour as documented."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from aenet_exp.config.validation import ConfigError
from aenet_exp.data import DataError, read_structures
from aenet_exp.model import Potential
from aenet_exp.training import run
from aenet_exp.training.dataset import split
from aenet_exp.training.run import prepared_data as prepare_data
from aenet_exp.model.potential import MODEL_FILE
from aenet_exp.training.events import Callback
from aenet_exp.training.metrics import ErrorSums
from aenet_exp.training.normalization import energy_normalization
from aenet_exp.training.optim import build_optimizer
from aenet_exp.training.precision import resolve_dtype, storage_devices
from aenet_exp.training.supervision import ForceSupervision
from conftest import SMALL

E_ATOMIC = {"O": -432.503149303, "Ti": -1604.604515075}


class Recorder(Callback):
    """An observer keeping what training reports."""

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
    recorder = Recorder()
    metrics = run(cfg, tmp_path, [recorder])
    return metrics, recorder


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


def test_loss_is_weighted_sum_of_pooled_rmses(fast_config, tmp_path):
    cfg = fast_config("force=full", "force.weight=0.3", "precision=float64")
    _, rec = train(cfg, tmp_path)
    model = Potential.load(tmp_path / MODEL_FILE)
    scale = float(model.energy_scale)
    last = rec.epochs[-1]
    expected = (0.7 * last["train/energy_rmse"] + 0.3 * last["train/force_rmse"]) / scale
    assert last["train/loss"] == pytest.approx(expected, rel=1e-12)


def test_force_scale_unbiased_multiplies_force_term(fast_config, tmp_path):
    # A vanishing learning rate keeps both runs on the same weights, so only the loss formula differs.
    base = ["force=subsampled", "force.fraction=0.25", "precision=float64", "iterations=1", "optimizer.mu=1e-30"]
    _, plain = train(fast_config(*base), tmp_path / "a")
    _, scaled = train(fast_config(*base, "force.scale_unbiased=true"), tmp_path / "b")
    p, s = plain.epochs[0], scaled.epochs[0]
    assert s["train/energy_rmse"] == pytest.approx(p["train/energy_rmse"], rel=1e-12)
    scale = float(Potential.load(tmp_path / "a" / MODEL_FILE).energy_scale)
    extra = 0.1 * (math.sqrt(4.0) - 1) * p["train/force_rmse"] / scale
    assert s["train/loss"] - p["train/loss"] == pytest.approx(extra, rel=1e-9)


def test_error_sums_pool_over_atoms_not_batches():
    sums = ErrorSums()
    sums.add(torch.tensor([1.0]), torch.ones(1, 3))
    sums.add(torch.tensor([0.0, 0.0, 0.0]), torch.zeros(3, 3))
    assert sums.energy_rmse() == pytest.approx(math.sqrt(1 / 4))  # a mean of batch RMSEs would give 0.5
    assert sums.force_rmse() == pytest.approx(math.sqrt(3 / 12))


def test_split_is_seeded():
    a, b = split(50, 20, seed=1), split(50, 20, seed=1)
    assert np.array_equal(a[0], b[0]) and len(a[1]) == 10
    assert not np.array_equal(split(50, 20, seed=2)[1], a[1])
    assert len(split(50, 0, seed=1)[1]) == 0


def test_testpercent_and_seed_change_the_split(fast_config):
    one = prepare_data(fast_config("data.testpercent=50"))
    assert len(one.test) == 8
    other = prepare_data(fast_config("data.testpercent=50", "seed=7"))
    assert set(one.test) != set(other.test)


@pytest.mark.parametrize(
    "fraction, minimum, expected", [(1.0, 1, 10), (0.3, 1, 3), (0.01, 1, 1), (0.01, 4, 4), (0.01, None, 1), (0.5, 20, 10)]
)
def test_force_sampler_size(fraction, minimum, expected):
    sampler = ForceSupervision(0.1, fraction, "random", True, minimum, candidates=np.arange(10), seed=0)
    assert len(sampler.select(0)[0]) == expected


def test_force_sampler_random_fixed_and_windows():
    random = ForceSupervision(0.1, 0.1, "random", True, 1, candidates=np.arange(100), seed=0)
    draws = [random.select(e)[0] for e in range(3)]
    assert draws[0] != draws[1] != draws[2]
    fixed = ForceSupervision(0.1, 0.1, "fixed", True, 1, candidates=np.arange(100), seed=0)
    assert fixed.select(0)[0] == fixed.select(5)[0]
    once = ForceSupervision(0.1, 0.1, "random", False, 1, candidates=np.arange(100), seed=0)
    assert once.select(0)[0] == once.select(9)[0]
    windows = ForceSupervision(0.1, 0.1, "random", True, 1, epochs_per_window=3, candidates=np.arange(100), seed=0)
    picks = [windows.select(e) for e in range(7)]
    assert picks[0][0] == picks[1][0] == picks[2][0] != picks[3][0]
    assert [new for _, new in picks] == [True, False, False, True, False, False, True]


def test_force_fraction_limits_force_supervised_atoms(fast_config, tmp_path):
    # 12 training structures with forces; fraction 0.25 supervises 3 of them per epoch.
    _, full = train(fast_config("force=full", "iterations=1", "precision=float64"), tmp_path / "full")
    _, part = train(fast_config("force=subsampled", "force.fraction=0.25", "iterations=1", "precision=float64"), tmp_path / "p")
    assert full.epochs[0]["train/force_rmse"] != part.epochs[0]["train/force_rmse"]


def test_energy_normalization_rules():
    e = np.array([-3.0, -1.0, 1.0])
    assert energy_normalization(e, None, None, True) == (-1.0, 2.0)
    assert energy_normalization(e, 0.0, None, True) == (0.0, 3.0)  # shift given: scale computed from it
    assert energy_normalization(e, None, 5.0, True) == (-1.0, 5.0)  # scale given: shift computed
    assert energy_normalization(e, 0.5, 4.0, True) == (0.5, 4.0)
    assert energy_normalization(e, None, None, False) == (0.0, 1.0)


def test_given_shift_and_scaling_reach_the_model(fast_config, tmp_path):
    run(fast_config("normalization.E_shift=-2.5", "iterations=1"), tmp_path)
    model = Potential.load(tmp_path / MODEL_FILE)
    assert float(model.energy_shift) == pytest.approx(-2.5)
    assert float(model.energy_scale) > 0
    run(fast_config("normalization.E_scaling=0.75", "iterations=1"), tmp_path)
    assert float(Potential.load(tmp_path / MODEL_FILE).energy_scale) == pytest.approx(0.75)


def test_normalization_switches(fast_config, tmp_path):
    run(fast_config("normalization.features=false", "normalization.energy=false", "iterations=1"), tmp_path)
    model = Potential.load(tmp_path / MODEL_FILE)
    assert float(model.energy_shift) == 0 and float(model.energy_scale) == 1
    assert torch.all(model.feature_mean == 0) and torch.all(model.feature_std == 1)
    run(fast_config("iterations=1"), tmp_path)
    fitted = Potential.load(tmp_path / MODEL_FILE)
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
    run(fast_config(f"normalization.feature_stats={path}", "iterations=1", "precision=float64"), tmp_path)
    model = Potential.load(tmp_path / MODEL_FILE)
    np.testing.assert_allclose(model.feature_mean.numpy(), mean)
    np.testing.assert_allclose(model.feature_std.numpy(), std)


def test_feature_stats_of_wrong_length_names_key(fast_config, tmp_path):
    path = tmp_path / "stats.npz"
    np.savez(path, mean=np.zeros(3), std=np.ones(3))
    with pytest.raises(ConfigError, match="^normalization.feature_stats: .*16 features"):
        run(fast_config(f"normalization.feature_stats={path}"), tmp_path)


def test_cohesive_needs_every_species(fast_config, data_dir):
    ethanol = data_dir / "ethanol" / "ethanol5.xyz"  # C, H, O; the default references cover O and Ti
    with pytest.raises(ConfigError, match=r"^normalization.E_atomic: .*\['C', 'H'\]"):
        prepare_data(fast_config(f"data.path={ethanol}"))
    with pytest.raises(ConfigError, match=r"^normalization.E_atomic: .*\['O', 'Ti'\]"):
        prepare_data(fast_config("data.E_atomic=null"))
    total = prepare_data(fast_config("data.E_atomic=null", "normalization.energy_target=total"))
    assert total.atomic_energies is None


def test_energy_target_changes_the_fitted_shift(fast_config, tmp_path):
    run(fast_config("iterations=1"), tmp_path / "c")
    run(fast_config("iterations=1", "normalization.energy_target=total"), tmp_path / "t")
    cohesive = Potential.load(tmp_path / "c" / MODEL_FILE)
    total = Potential.load(tmp_path / "t" / MODEL_FILE)
    assert float(cohesive.energy_shift) > -10 > float(total.energy_shift)  # eV/atom: cohesive ~ -8, total ~ -800
    assert cohesive.atomic_energies.tolist() == pytest.approx([E_ATOMIC["O"], E_ATOMIC["Ti"]])
    assert total.atomic_energies.abs().sum() == 0


def test_e_atomic_from_isolated_atoms_file(fast_config, data_dir):
    iso = data_dir / "ethanol" / "isolated_atoms.xyz"
    data = prepare_data(fast_config(f"data.path={data_dir / 'ethanol' / 'ethanol5.xyz'}", f"normalization.E_atomic={iso}"))
    assert data.atomic_energies == pytest.approx({"C": -1025.2770951782686, "H": -13.568422383046626, "O": -2035.5709809589698})
    assert data.species == ["C", "H", "O"]


def test_max_energy_and_max_forces_filter(fast_config):
    structures = read_structures(SMALL)
    per_atom = [(s.energy - sum(E_ATOMIC[x] for x in s.species)) / s.n_atoms for s in structures]
    threshold = float(np.median(per_atom))
    data = prepare_data(fast_config(f"data.max_energy={threshold}"))
    assert data.removed["max_energy"] == sum(e > threshold for e in per_atom)
    largest = sorted(np.abs(s.forces).max() for s in structures)
    data = prepare_data(fast_config(f"data.max_forces={largest[-3]}"))
    assert data.removed["max_forces"] == 2 and len(data.structures) == 14


def test_filters_removing_everything_is_a_data_error(fast_config):
    with pytest.raises(DataError, match="no structure left"):
        prepare_data(fast_config("data.max_energy=-1000"))


@pytest.mark.parametrize("name, expected", [("float32", torch.float32), ("float64", torch.float64)])
def test_precision_sets_dtype_of_model(fast_config, tmp_path, name, expected):
    run(fast_config(f"precision={name}", "iterations=1"), tmp_path)
    model = Potential.load(tmp_path / MODEL_FILE)
    assert model.descriptor.dtype == expected and model.feature_mean.dtype == expected


def test_auto_precision_and_memory_modes():
    cpu, gpu = torch.device("cpu"), torch.device("cuda:0")
    assert resolve_dtype("auto", cpu) == torch.float32 and resolve_dtype("auto", gpu) == torch.float64
    assert storage_devices("cpu", gpu) == (cpu, cpu)
    assert storage_devices("gpu", gpu) == (gpu, gpu)
    assert storage_devices("mixed", gpu) == (cpu, gpu)


@pytest.mark.parametrize(
    "name, cls, expected",
    [
        ("adam", torch.optim.Adam, dict(lr=0.002, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01)),
        ("adamw", torch.optim.AdamW, dict(lr=0.002, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01)),
        ("sgd", torch.optim.SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.01)),
    ],
)
def test_optimizer_parameters_reach_torch(fast_config, name, cls, expected):
    extra = (
        ["optimizer.lr=0.05", "optimizer.momentum=0.5"]
        if name == "sgd"
        else ["optimizer.mu=0.002", "optimizer.beta1=0.8", "optimizer.beta2=0.99", "optimizer.epsilon=1e-7"]
    )
    cfg = fast_config(f"optimizer={name}", "optimizer.weight_decay=0.01", *extra)
    from aenet_exp.training.run import build_potential

    from omegaconf import OmegaConf

    params = build_potential(cfg, ["O", "Ti"], torch.float64).networks.parameters()
    optimizer = build_optimizer(params, **OmegaConf.to_container(cfg.optimizer))
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    for key, value in expected.items():
        assert group[key] == pytest.approx(value), key


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
        run(cfg, tmp_path)
    finally:
        FeatureSource._evaluate = original
    assert counted == [5, 5, 2]  # 12 training structures


def test_save_energies_and_forces_files(fast_config, tmp_path):
    run(fast_config("tracking.save_energies=true", "tracking.save_forces=true", "precision=float64"), tmp_path)
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
    run(fast_config(), tmp_path)
    assert not list(tmp_path.glob("*.predicted"))


def test_timing_reports_every_phase(fast_config, tmp_path, capsys):
    _, rec = train(fast_config("tracking.timing=true", "force=full"), tmp_path)
    for phase in ("data", "featurize", "forward", "backward", "optimizer"):
        assert rec.epochs[-1][f"time/{phase}_s"] > 0
    assert "per_epoch_s" in capsys.readouterr().out
    _, quiet = train(fast_config(), tmp_path)
    assert "time/data_s" not in quiet.epochs[-1]


SUBSAMPLED = ["force=subsampled", "force.fraction=0.25"]
FLAG_CASES = [  # (the run, the speed flags added to it)
    (["force=off"], ["caching.features=true"]),
    (["force=off"], ["caching.features=true", "caching.scope=train"]),
    (["force=off"], ["caching.features=true", "caching.scope=val"]),
    (["force=full"], ["caching.neighbors=true"]),
    (["force=full"], ["caching.triplets=true"]),
    (SUBSAMPLED, ["caching.features_for_force=true"]),
    (SUBSAMPLED + ["force.epochs_per_window=2"], ["caching.features_for_force=true", "caching.neighbors=true"]),
    (["force=full"], ["dataloader.num_workers=2", "dataloader.persistent_workers=false"]),
    (SUBSAMPLED, ["dataloader.num_workers=1", "caching.neighbors=true"]),
    (["force=full"], ["precision.memory_mode=cpu"]),
    (["force=full"], ["precision.memory_mode=mixed"]),
    (["force=full"], ["caching.derivatives=true"]),
    (SUBSAMPLED, ["caching.derivatives=true", "caching.features_for_force=true"]),
    (SUBSAMPLED, ["caching.derivatives=true", "caching.scope=train", "dataloader.num_workers=1"]),
    (["force=full"], ["caching.derivatives=true", "precision.memory_mode=cpu"]),
]
MEMORY_KEYS = {"memory/derivative_cache_mb"}


@pytest.mark.parametrize("setup, flags", FLAG_CASES)
def test_speed_flags_never_change_results(fast_config, tmp_path, setup, flags):
    base = [*setup, "precision=float64", "iterations=3"]
    reference, ref_run = train(fast_config(*base), tmp_path / "a")
    flagged, flag_run = train(fast_config(*base, *flags), tmp_path / "b")
    epochs = [(r, f) for r, f in zip(ref_run.epochs, flag_run.epochs)] + [(reference, flagged)]
    for ref_metrics, flag_metrics in epochs:
        assert flag_metrics.keys() - MEMORY_KEYS == ref_metrics.keys()
        for key in (k for k in ref_metrics if not k.startswith("time/")):
            assert flag_metrics[key] == pytest.approx(ref_metrics[key], rel=1e-10), key


class Counter:
    def __init__(self, target):
        self.target, self.calls = target, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.target(*args, **kwargs)


@pytest.mark.parametrize("flags", [["caching=energy"], ["caching=force", "force=subsampled", "force.fraction=0.25"]])
def test_persist_dir_reused_by_the_next_run(fast_config, tmp_path, monkeypatch, flags):
    from aenet_exp.training import batching

    searches = Counter(batching.find_pairs)
    monkeypatch.setattr(batching, "find_pairs", searches)
    cache = tmp_path / "cache"
    cfg = fast_config(*flags, f"caching.persist_dir={cache}", "precision=float64")
    first = run(cfg, tmp_path / "one")
    assert searches.calls == 16
    entries = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert entries and all(name.endswith(".npz") and not name.startswith(".") for name in entries)
    for path in cache.rglob("*.npz"):
        np.load(path, allow_pickle=False).files  # plain arrays only

    second = run(cfg, tmp_path / "two")
    assert searches.calls == 16  # nothing searched again
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == entries
    for key in first:
        if not key.startswith("time/"):
            assert second[key] == pytest.approx(first[key], rel=1e-10), key

    run(fast_config(*flags, f"caching.persist_dir={cache}", "precision=float64", "descriptor.rad_cutoff=4.5"), tmp_path / "3")
    assert searches.calls == 32  # a changed cutoff rebuilds


def test_corrupt_persisted_entry_is_rebuilt(fast_config, tmp_path):
    cache = tmp_path / "cache"
    cfg = fast_config("caching=energy", f"caching.persist_dir={cache}", "precision=float64")
    first = run(cfg, tmp_path / "one")
    for path in cache.rglob("*.npz"):
        path.write_bytes(b"garbage")
    second = run(cfg, tmp_path / "two")
    assert second["final/test/energy_rmse"] == pytest.approx(first["final/test/energy_rmse"], rel=1e-10)
    for path in cache.rglob("*.npz"):
        assert np.load(path, allow_pickle=False).files


@pytest.mark.parametrize(
    "flags, searches",
    [
        ([], 3 * 16 + 16),  # every epoch and every evaluation searches again: 3 epochs, stats, final
        (["caching.neighbors=true"], 16),
        (["caching.triplets=true"], 16),
        (["caching.neighbors=true", "caching.scope=train"], 12 + 3 * 4 + 4),  # test structures each time
    ],
)
def test_neighbor_caches_skip_searches(fast_config, tmp_path, monkeypatch, flags, searches):
    from aenet_exp.training import batching

    counter = Counter(batching.find_pairs)
    monkeypatch.setattr(batching, "find_pairs", counter)
    run(fast_config("force=full", "iterations=3", *flags), tmp_path)
    # feature statistics: 12 train; each epoch: 12 train + 4 test; final predictions: 16
    baseline = 12 + 3 * 16 + 16
    assert counter.calls == (baseline if not flags else searches)


@pytest.mark.parametrize(
    "flags, computed",
    [  # statistics pass (12 train), 3 epochs (12 train + 4 test), final predictions (16)
        ([], 12 + 3 * 16 + 16),
        (["caching.features=true"], 12 + 4),  # the final pass (energies only) reads the cache
        (["caching.features=true", "caching.scope=train"], 12 + 3 * 4 + 4),
    ],
)
def test_feature_cache_skips_featurisation(fast_config, tmp_path, monkeypatch, flags, computed):
    from aenet_exp.descriptor import ChebyshevDescriptor

    structures = []
    original = ChebyshevDescriptor.forward

    def counting(self, graph):
        structures.append(graph.n_structures)
        return original(self, graph)

    monkeypatch.setattr(ChebyshevDescriptor, "forward", counting)
    run(fast_config("iterations=3", *flags), tmp_path)
    assert sum(structures) == computed


def test_features_for_force_caches_energy_only_structures(fast_config, tmp_path, monkeypatch):
    from aenet_exp.training.features import FeatureSource

    built = []
    original = FeatureSource._energy_block

    def counting(self, batch, b, force_set):
        built.append(len(b.request.energy_indices))
        return original(self, batch, b, force_set)

    monkeypatch.setattr(FeatureSource, "_energy_block", counting)
    run(fast_config("force=subsampled", "force.fraction=0.25", "force.resample_each_epoch=false", "iterations=3",
                    "caching.features_for_force=true", "data.testpercent=0"), tmp_path)
    # 16 training structures, 4 with forces each epoch (drawn once): 12 energy-only featurised in the
    # statistics pass (16) and then never again; the final pass featurises none without forces.
    assert sum(built) == 16


def test_dataloader_settings_reach_torch():
    from aenet_exp.training.batching import BatchRequests, GraphDataset, make_loader
    from aenet_exp.descriptor import ChebyshevDescriptor

    dataset = GraphDataset([], ChebyshevDescriptor(["O"], 2, 3.0, 2, 3.0), False, False, set())
    loader = make_loader(dataset, BatchRequests(), num_workers=2, prefetch_factor=5, persistent_workers=False)
    assert (loader.num_workers, loader.prefetch_factor, loader.persistent_workers) == (2, 5, False)
    assert make_loader(dataset, BatchRequests(), 0, 5, True).num_workers == 0


def test_overlapping_atoms_are_reported_by_file(fast_config, tmp_path):
    bad = tmp_path / "overlap.xsf"
    bad.write_text(
        "# total energy = -10.0 eV\nCRYSTAL\nPRIMVEC\n4 0 0\n0 4 0\n0 0 4\nPRIMCOORD\n3 1\n"
        "Ti 0 0 0\nO 2 2 2\nO 2.05 2 2\n"
    )
    with pytest.raises(DataError, match=rf"^{bad}: frame 0: atoms 1 \(O\) and 2 \(O\) are 0.050 Å apart"):
        prepare_data(fast_config(f"data.path={bad}"))


@pytest.mark.parametrize("workers", [0, 2])
def test_database_training_equals_in_memory(fast_config, tmp_path, workers):
    base = ["force=subsampled", "force.fraction=0.5", "precision=float64", "iterations=2",
            f"dataloader.num_workers={workers}"]
    memory, _ = train(fast_config(*base), tmp_path / "m")
    database = tmp_path / "set.h5"
    lazy, _ = train(fast_config(*base, f"data.database={database}", "data.in_memory_cache_size=4"), tmp_path / "d")
    assert database.is_file()
    for key in (k for k in memory if not k.startswith("time/")):
        assert lazy[key] == pytest.approx(memory[key], rel=1e-10), key


def test_database_filters_use_columns(fast_config, tmp_path):
    from aenet_exp.data.hdf5 import build_database

    database = tmp_path / "set.h5"
    build_database(SMALL, database)
    structures = read_structures(SMALL)
    largest = sorted(np.abs(s.forces).max() for s in structures)
    data = prepare_data(fast_config(f"data.database={database}", f"data.max_forces={largest[-3]}"))
    assert data.removed["max_forces"] == 2 and len(data.structures) == 14
    assert data.structures[0].n_atoms == data.columns.n_atoms[0]


def test_float32_targets_keep_per_atom_precision():
    from aenet_exp.training.columns import Columns
    from aenet_exp.training.normalization import Labels

    columns = Columns.of_structures(read_structures(SMALL))
    shift, scale = -8.0, 0.5
    exact = Labels.of(columns, E_ATOMIC, shift, scale, torch.float64, torch.device("cpu")).target.numpy()
    single = Labels.of(columns, E_ATOMIC, shift, scale, torch.float32, torch.device("cpu")).target.numpy()
    # totals reach -20,000 eV: a float32 difference of totals would be off by ~1e-3 eV/atom
    assert np.abs(single - exact).max() * scale < 1e-6


def test_network_for_a_species_not_in_the_data_is_refused(fast_config, tmp_path):
    with pytest.raises(ConfigError, match=r"^model.per_species: species \['Tl'\]"):
        run(fast_config("+model.per_species.Tl={hidden: [3], activations: [tanh]}"), tmp_path)


@pytest.mark.parametrize("content", [b"[1, 2, 3]", b'{"mean": {"a": 1}, "std": 2}', b"PK\x03\x04 not a zip"])
def test_malformed_feature_stats_file_names_key(fast_config, tmp_path, content):
    path = tmp_path / ("stats.npz" if content.startswith(b"PK") else "stats.json")
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="^normalization.feature_stats: "):
        run(fast_config(f"normalization.feature_stats={path}"), tmp_path)


def test_force_weight_without_forces_is_refused(fast_config, tmp_path, data_dir):
    no_forces = tmp_path / "noforces.xyz"
    lines = (data_dir / "ethanol" / "ethanol5.xyz").read_text().splitlines()
    frames = []
    for k in range(5):
        block = lines[k * 11 : (k + 1) * 11]
        header = block[1].replace(":forces:R:3", "")
        atoms = [" ".join(row.split()[:4]) for row in block[2:]]
        frames += [block[0], header, *atoms]
    no_forces.write_text("\n".join(frames) + "\n")
    iso = data_dir / "ethanol" / "isolated_atoms.xyz"
    with pytest.raises(ConfigError, match="^force.weight: .*no training structure has forces"):
        run(fast_config(f"data.path={no_forces}", f"normalization.E_atomic={iso}", "force=full"), tmp_path)


@pytest.mark.parametrize(
    "setup",
    [
        ["force=subsampled", "force.fraction=0.5"],
        ["caching=energy"],
        ["scheduler=plateau", "scheduler.warmup_epochs=1", "scheduler.patience=0", "ema.decay=0.9",
         "early_stopping.patience=10"],
    ],
)
def test_resume_equals_an_uninterrupted_run(fast_config, tmp_path, setup):
    base = [*setup, "precision=float64", "checkpoint.every=1"]
    _, whole = train(fast_config(*base, "iterations=4"), tmp_path / "whole")
    _, first = train(fast_config(*base, "iterations=2"), tmp_path / "part")
    assert (tmp_path / "part" / "checkpoint.pt").is_file()
    metrics, rest = train(fast_config(f"resume={tmp_path / 'part'}", "iterations=4"), tmp_path / "ignored")
    assert len(rest.epochs) == 2 and not (tmp_path / "ignored").exists()
    for expected, got in zip(whole.epochs[2:], rest.epochs):
        for key in (k for k in expected if not k.startswith("time/")):
            assert got[key] == pytest.approx(expected[key], rel=1e-10), key
    assert metrics["final/test/energy_rmse"] == pytest.approx(whole.result.metrics["final/test/energy_rmse"], rel=1e-10)
    assert len(rest.result.history["train/loss"]) == 4


def test_checkpoint_refuses_code_and_resume_names_missing_checkpoint(fast_config, tmp_path):
    from aenet_exp.config.validation import validate
    from aenet_exp.training.checkpoint import load_checkpoint

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "aenet_exp-checkpoint", "x": Exploit()}, tmp_path / "checkpoint.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        load_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="^resume: no checkpoint.pt"):
        validate(fast_config(f"resume={tmp_path / 'nothing'}"))


def test_init_from_starts_from_trained_weights(fast_config, tmp_path):
    run(fast_config("iterations=3", "precision=float64"), tmp_path / "a")
    trained = Potential.load(tmp_path / "a" / MODEL_FILE)
    metrics, rec = train(fast_config(f"init_from={tmp_path / 'a'}", "iterations=1", "precision=float64",
                                     "optimizer.mu=1e-30"), tmp_path / "b")
    tuned = Potential.load(tmp_path / "b" / MODEL_FILE)
    assert float(tuned.energy_shift) == float(trained.energy_shift)
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[name], value, rtol=1e-12, atol=1e-20)


def test_output_directory_that_cannot_be_written_fails_first(fast_config, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="^hydra.run.dir: cannot write"):
        run(fast_config(), blocker / "out")
