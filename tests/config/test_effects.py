"""Which keys act when: a key of another option of a group is unknown under the option chosen (each option its own
dataclass), and a key idle under the values of others (config/effects.py) is named with why."""

from __future__ import annotations

import pytest
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aenet_exp.config.commands import COMMANDS
from aenet_exp.config.effects import TAYLOR_VALIDITY, doubtful_values, ineffective_keys
from aenet_exp.config.explain import composition_error_line

from helpers import compose_command, compose_train

OTHER_OPTIONS_KEYS = [
    ("train", [], "augment.children=2", "augment=taylor"),
    ("train", [], "augment.displacement=0.05", "augment=taylor"),
    ("train", [], "augment.seed=3", "augment=taylor"),
    ("train", [], "committee.members=3", "committee=deep"),
    ("train", [], "committee.seeds=[1]", "committee=deep"),
    ("train", [], "committee.calibrate=true", "committee=deep"),
    ("train", [], "committee.calibration_percent=20", "committee=deep"),
    ("train", [], "committee.bootstrap=true", "committee=deep"),
    ("train", [], "scheduler.min_lr=1e-5", "scheduler=cosine or scheduler=plateau"),
    ("train", ["scheduler=cosine"], "scheduler.patience=3", "scheduler=plateau"),
    ("learn", [], "explore.pressure=2.0", "explore=npt"),
    ("learn", ["explore=npt"], "explore.friction=0.1", "explore=md"),
    ("learn", [], "oracle.command='x {input} {output}'", "oracle=command"),
    ("learn", ["oracle=command"], "oracle.kwargs={}", "oracle=xtb or oracle=ase"),
]


@pytest.mark.parametrize("command, chosen, override, readers", OTHER_OPTIONS_KEYS,
                         ids=[case[2].split("=")[0] for case in OTHER_OPTIONS_KEYS])
def test_a_key_of_another_option_is_refused_naming_the_options_that_read_it(command, chosen, override, readers):
    key = override.split("=")[0]
    with pytest.raises((HydraException, OmegaConfBaseException)) as raised:
        compose_command(command, *chosen, override)
    line = composition_error_line(raised.value, COMMANDS[command].schema)
    assert line.startswith(f"{key}: a key of {readers} only, not of the {key.split('.')[0]} chosen"), line
    reader = readers.split(" or ")[0]
    assert OmegaConf.select(compose_command(command, reader, override), key) is not None


@pytest.mark.parametrize("overrides, key, why", [
    (["committee=deep", "committee.calibrate=false", "committee.calibration_percent=20"],
     "committee.calibration_percent", "nothing is calibrated (committee.calibrate=false)"),
    (["force.fraction=0.5"], "force.fraction", "forces are not trained (force.weight=0)"),
    (["force=full", "force.sampling=fixed"], "force.sampling", "every force-labelled structure is supervised"),
    (["force=subsampled", "force.sampling=fixed", "force.epochs_per_window=3"], "force.epochs_per_window",
     "force.sampling=fixed draws the force structures once"),
    (["scheduler=cosine", "scheduler.warmup_start_factor=0.5"], "scheduler.warmup_start_factor", "there is no warm-up"),
])
def test_a_key_idle_under_the_values_of_others_is_named_with_why(overrides, key, why):
    found = dict(ineffective_keys(compose_train(*overrides)))
    assert found[key].startswith(why), found
    assert key not in dict(ineffective_keys(compose_train(*overrides[:-1])))


@pytest.mark.parametrize("overrides", [[], ["normalization.E_atomic={O: -432.5, Ti: -1604.6}"],
                                       ["normalization.E_atomic=fit", "normalization.energy_target=total"]])
def test_fixed_references_without_a_fit_are_named(overrides):
    fixed = "normalization.E_atomic_fixed={O: -432.5}"
    assert "normalization.E_atomic_fixed" in dict(ineffective_keys(compose_train(*overrides, fixed)))
    assert "normalization.E_atomic_fixed" not in dict(ineffective_keys(compose_train("normalization.E_atomic=fit", fixed)))


def test_a_taylor_displacement_beyond_first_order_is_doubted():
    assert TAYLOR_VALIDITY == 0.05
    (key, why), = doubtful_values(compose_train("augment=taylor", "augment.displacement=5"))
    assert key == "augment.displacement" and why.startswith("is 5.0 Å, beyond 0.05 Å")
    assert doubtful_values(compose_train("augment=taylor", "augment.displacement=0.05")) == []
