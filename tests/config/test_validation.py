"""Validation (config/validation.py): every range rule, choice and combination names its key."""

from __future__ import annotations

import pytest

from aenet_exp.config.validation import ConfigError, validate

from helpers import compose_train

VALIDATION_CASES = [
    ("iterations=0", "iterations"),
    ("data.testpercent=101", "data.testpercent"),
    ("data.testpercent=-1", "data.testpercent"),
    ("data.max_forces=0", "data.max_forces"),
    ("force.weight=1.5", "force.weight"),
    ("force.weight=-0.1", "force.weight"),
    ("force.fraction=0", "force.fraction"),
    ("force.fraction=1.2", "force.fraction"),
    ("force.sampling=stratified", "force.sampling"),
    ("force.min_structures_per_epoch=-1", "force.min_structures_per_epoch"),
    ("force.epochs_per_window=0", "force.epochs_per_window"),
    ("optimizer.batchsize=0", "optimizer.batchsize"),
    ("optimizer.mu=0", "optimizer.mu"),
    ("optimizer.beta1=1.0", "optimizer.beta1"),
    ("optimizer.epsilon=0", "optimizer.epsilon"),
    ("optimizer.weight_decay=-1", "optimizer.weight_decay"),
    ("descriptor.rad_order=0", "descriptor.rad_order"),
    ("descriptor.ang_order=-2", "descriptor.ang_order"),
    ("descriptor.rad_cutoff=0", "descriptor.rad_cutoff"),
    ("descriptor.ang_cutoff=-3", "descriptor.ang_cutoff"),
    ("descriptor.min_cutoff=5.0", "descriptor.min_cutoff"),
    ("descriptor.species=[O,O]", "descriptor.species"),
    ("model.hidden=[0,5]", "model.hidden"),
    ("model.activations=[tanh]", "model.activations"),
    ("model.activations=[tanh,softplus]", "model.activations"),
    ("caching.scope=everything", "caching.scope"),
    ("dataloader.num_workers=-1", "dataloader.num_workers"),
    ("dataloader.prefetch_factor=0", "dataloader.prefetch_factor"),
    ("precision.dtype=float16", "precision.dtype"),
    ("precision.memory_mode=disk", "precision.memory_mode"),
    ("precision.device=tpu", "precision.device"),
    ("normalization.energy_target=free", "normalization.energy_target"),
    ("normalization.E_scaling=0", "normalization.E_scaling"),
    ("tracking.experiment=' '", "tracking.experiment"),
]


@pytest.mark.parametrize("override, key", VALIDATION_CASES)
def test_validation_rule_names_its_key(override, key):
    cfg = compose_train(override)
    with pytest.raises(ConfigError, match=f"^{key}: "):
        validate(cfg)


@pytest.mark.parametrize("overrides, key", [
    (["augment=taylor", "augment.children=0"], "augment.children"),
    (["augment=taylor", "augment.children=-2"], "augment.children"),
    (["augment=taylor", "augment.displacement=0"], "augment.displacement"),
    (["augment=taylor", "augment.displacement=-0.01"], "augment.displacement"),
    (["augment=taylor", "augment.seed=-1"], "augment.seed"),
    (["augment=taylor", "augment.seed=4611686018427387904"], "augment.seed"),
    (["augment.name=gaussian"], "augment.name"),
])
def test_augment_rules_name_their_key(overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}: expected ") as refused:
        validate(compose_train(*overrides))
    assert "\n" not in str(refused.value)


def test_sgd_rules():
    with pytest.raises(ConfigError, match="^optimizer.lr: "):
        validate(compose_train("optimizer=sgd", "optimizer.lr=-1"))
    with pytest.raises(ConfigError, match="^optimizer.momentum: "):
        validate(compose_train("optimizer=sgd", "optimizer.momentum=1"))


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["caching.features=true", "force=full"], "caching.features"),
        (["normalization.energy=false", "normalization.E_shift=1.0"], "normalization.energy"),
        (["normalization.features=false", "normalization.feature_stats=stats.npz"], "normalization.features"),
        (["normalization.feature_stats=/no/such/stats.npz"], "normalization.feature_stats"),
        (["+model.per_species.O={hidden: [3], activations: [cosh]}"], "model.per_species.O.activations"),
        (["+model.per_species.O={hidden: [3]}"], "model.per_species.O"),
        (["+model.per_species.O={hidden: [two], activations: [tanh]}"], "model.per_species.O.hidden"),
    ],
)
def test_combination_rules_name_their_key(overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        validate(compose_train(*overrides))


def test_cuda_device_refused_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="^precision.device: .*CUDA is not available"):
        validate(compose_train("precision.device=cuda"))


def test_persist_dir_needs_a_cache_to_persist(tmp_path):
    with pytest.raises(ConfigError, match="^caching.persist_dir: .*none is on"):
        validate(compose_train("caching=none", f"caching.persist_dir={tmp_path}"))
    validate(compose_train(f"caching.persist_dir={tmp_path}", "caching=force"))
    validate(compose_train(f"caching.persist_dir={tmp_path}"))  # the default, caching=auto, keeps features


@pytest.mark.parametrize(
    "overrides, key",
    [(["optimizer.name=sgd"], "optimizer.name"), (["optimizer.name=rmsprop"], "optimizer.name")],
)
def test_optimizer_chosen_by_name_is_refused_clearly(overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        validate(compose_train(*overrides))



@pytest.mark.parametrize(
    "override, key",
    [
        ("optimizer.mu=inf", "optimizer.mu"),
        ("optimizer.epsilon=inf", "optimizer.epsilon"),
        ("normalization.E_shift=nan", "normalization.E_shift"),
        ("normalization.E_scaling=inf", "normalization.E_scaling"),
        ("normalization.E_atomic={O: nan, Ti: -1604.6}", "normalization.E_atomic"),
        (("scheduler=cosine", "scheduler.min_lr=inf"), "scheduler.min_lr"),
        ("data.max_energy=nan", "data.max_energy"),
        ("descriptor.rad_cutoff=inf", "descriptor.rad_cutoff"),
        ("force.weight=nan", "force.weight"),
    ],
)
def test_nan_and_inf_are_refused_wherever_a_float_is_expected(override, key):
    with pytest.raises(ConfigError, match=f"^{key}: expected a finite number|^{key}: expected .*finite"):
        validate(compose_train(*([override] if isinstance(override, str) else override)))


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.path=2024", "data.path"),  # a folder named 2024: Hydra parses the name as a number
        ("data.path={a: 1}", "data.path"),
        ("data.test_path=5", "data.test_path"),
        ("normalization.E_atomic=5", "normalization.E_atomic"),
        ("seed=18446744073709551616", "seed"),
    ],
)
def test_values_of_the_wrong_kind_are_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"^{key}: expected ") as refused:
        validate(compose_train(override))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("override", ["+optimizer.lr_typo=1", "+force.fractoin=0.3", "+tracking.uri_typo=x"])
def test_keys_added_with_plus_must_exist_in_the_schema(override):
    key = override[1:].split("=")[0]
    with pytest.raises(ConfigError, match=f"^{key}: no such key in {key.rsplit('.', 1)[0]}; did you mean "):
        validate(compose_train(override))


def test_a_resumed_run_takes_only_what_may_change():
    from aenet_exp.config.validation import check_resume_overrides

    stored = compose_train("force=subsampled")
    same = ["iterations=20", "tracking.show_progress=false", "tracking.enabled=false", "force=subsampled"]
    check_resume_overrides(["resume=run", *same], compose_train(*same), stored)
    with pytest.raises(ConfigError, match="^resume: .*optimizer.mu is 0.1 here, 0.001 in the run; force.weight is 0.3 "
                                          "here, .* in the run: these cannot change"):
        check_resume_overrides(["resume=run", "optimizer.mu=0.1", "force.weight=0.3"],
                               compose_train("force=subsampled", "optimizer.mu=0.1", "force.weight=0.3"), stored)



@pytest.mark.parametrize("override", ["committee.bootstrap=2", "committee.bootstrap=0", "tracking.enabled=no",
                                      "caching.auto=1"])
def test_a_boolean_key_takes_only_true_or_false(override):
    from aenet_exp.config.validation import check_boolean_overrides

    key, value = override.split("=")
    with pytest.raises(ConfigError, match=f"^{key}: expected true or false, got '{value}'$"):
        check_boolean_overrides(compose_train("committee=deep", override), [override])
    check_boolean_overrides(compose_train("committee=deep", f"{key}=true"), [f"{key}=true", "committee=deep", "~data.name", "seed=2"])


@pytest.mark.slow
def test_an_integer_for_a_boolean_key_is_one_line_in_every_command(tmp_path):
    from helpers import run_cli

    for args in (["train", "committee=deep", "committee.bootstrap=2"], ["select", "run=x", "pool=y", "tracking.enabled=2"]):
        result = run_cli(*args, cwd=tmp_path)
        key = args[-1].split("=")[0]
        assert result.returncode == 2 and result.stderr == f"aenet_exp: error: {key}: expected true or false, got '2'\n"
