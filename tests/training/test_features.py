"""Feature sources and caches (training/features.py, batching.py, persist.py): caching never changes results."""

from __future__ import annotations

import numpy as np
import pytest

from aenet_exp.build.training import run_training

from helpers import Counter, train

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
    (["force=off"], ["caching=auto"]),
    (SUBSAMPLED + ["sampling=error_weighted"], ["caching=auto", "dataloader.num_workers=1"]),
    (SUBSAMPLED, ["caching=auto"]),
    (["force=full", "dataloader.num_workers=1"], ["caching=auto", "caching.scope=train"]),
    # Taylor children (augment=taylor): energy-only structures, their features kept
    pytest.param(["force=off", "augment=taylor"], ["caching=energy"], marks=pytest.mark.slow),
    pytest.param(SUBSAMPLED + ["augment=taylor"], ["caching=auto"], marks=pytest.mark.slow),
    pytest.param(["force=full", "augment=taylor"], ["caching.features_for_force=true", "caching.derivatives=true"],
                 marks=pytest.mark.slow),
]


MEMORY_KEYS = {"memory/derivative_cache_mb"}


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """The run of a setup without speed flags, trained once and shared by every case that flags that setup:
    ``reference(fast_config, base)`` gives its final metrics and :class:`Recorder` (read only)."""
    trained = {}

    def reference(fast_config, base):
        if tuple(base) not in trained:
            trained[tuple(base)] = train(fast_config(*base), tmp_path_factory.mktemp("reference"))
        return trained[tuple(base)]

    return reference


@pytest.mark.parametrize("setup, flags", FLAG_CASES)
def test_speed_flags_never_change_results(fast_config, tmp_path, reference_runs, setup, flags):
    base = [*setup, "precision=float64", "iterations=3"]
    reference, ref_run = reference_runs(fast_config, base)
    flagged, flag_run = train(fast_config(*base, *flags), tmp_path / "b")
    epochs = [(r, f) for r, f in zip(ref_run.epochs, flag_run.epochs)] + [(reference, flagged)]
    for ref_metrics, flag_metrics in epochs:
        assert flag_metrics.keys() - MEMORY_KEYS == ref_metrics.keys()
        for key in (k for k in ref_metrics if not k.startswith("time/")):
            assert flag_metrics[key] == pytest.approx(ref_metrics[key], rel=1e-10), key


@pytest.mark.parametrize("flags", [["caching=energy"], ["caching=force", "force=subsampled", "force.fraction=0.25"]])
def test_persist_dir_reused_by_the_next_run(fast_config, tmp_path, monkeypatch, flags):
    from aenet_exp.training import batching

    searches = Counter(batching.find_pairs)
    monkeypatch.setattr(batching, "find_pairs", searches)
    cache = tmp_path / "cache"
    cfg = fast_config(*flags, f"caching.persist_dir={cache}", "precision=float64")
    first = run_training(cfg, tmp_path / "one")
    assert searches.calls == 16
    entries = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert entries and all(name.endswith(".npz") and not name.startswith(".") for name in entries)
    for path in cache.rglob("*.npz"):
        np.load(path, allow_pickle=False).files  # plain arrays only

    second = run_training(cfg, tmp_path / "two")
    assert searches.calls == 16  # nothing searched again
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == entries
    for key in first:
        if not key.startswith("time/"):
            assert second[key] == pytest.approx(first[key], rel=1e-10), key

    run_training(fast_config(*flags, f"caching.persist_dir={cache}", "precision=float64", "descriptor.rad_cutoff=4.5"), tmp_path / "3")
    assert searches.calls == 32  # a changed cutoff rebuilds


def test_corrupt_persisted_entry_is_rebuilt(fast_config, tmp_path):
    cache = tmp_path / "cache"
    cfg = fast_config("caching=energy", f"caching.persist_dir={cache}", "precision=float64")
    first = run_training(cfg, tmp_path / "one")
    for path in cache.rglob("*.npz"):
        path.write_bytes(b"garbage")
    second = run_training(cfg, tmp_path / "two")
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
    run_training(fast_config("force=full", "iterations=3", *flags), tmp_path)
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
    run_training(fast_config("iterations=3", *flags), tmp_path)
    assert sum(structures) == computed


def test_features_for_force_caches_energy_only_structures(fast_config, tmp_path, monkeypatch):
    from aenet_exp.training.features import FeatureSource

    built = []
    original = FeatureSource._energy_block

    def counting(self, batch, b, force_set):
        built.append(len(b.request.energy_indices))
        return original(self, batch, b, force_set)

    monkeypatch.setattr(FeatureSource, "_energy_block", counting)
    run_training(fast_config("force=subsampled", "force.fraction=0.25", "force.resample_each_epoch=false", "iterations=3",
                    "caching.features_for_force=true", "data.testpercent=0"), tmp_path)
    # 16 training structures, 4 with forces each epoch (drawn once): 12 energy-only featurised in the
    # statistics pass (16) and then never again; the final pass featurises none without forces.
    assert sum(built) == 16


def test_dataloader_settings_reach_torch():
    from aenet_exp.descriptor import ChebyshevDescriptor
    from aenet_exp.training.batching import BatchRequests, GraphDataset, make_loader

    dataset = GraphDataset([], ChebyshevDescriptor(["O"], 2, 3.0, 2, 3.0), False, False, set())
    loader = make_loader(dataset, BatchRequests(), num_workers=2, prefetch_factor=5, persistent_workers=False)
    assert (loader.num_workers, loader.prefetch_factor, loader.persistent_workers) == (2, 5, False)
    assert make_loader(dataset, BatchRequests(), 0, 5, True).num_workers == 0



@pytest.mark.parametrize(
    "setup, kept",
    [(["force=off"], "features"), (["force=subsampled"], "features_for_force,derivatives"), ([], "features")],
)
def test_auto_caching_keeps_what_cannot_change_results(fast_config, tmp_path, setup, kept):
    _, rec = train(fast_config("caching=auto", *setup), tmp_path)
    assert rec.facts["caching.kept"] == kept


def test_auto_caching_leaves_out_jacobians_that_would_not_fit(fast_config, tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules["aenet_exp.build.training"], "machine_memory", lambda: 1000)  # bytes: nothing fits
    _, rec = train(fast_config("caching=auto", "force=full"), tmp_path)
    assert rec.facts["caching.kept"] == "features_for_force"
