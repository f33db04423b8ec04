"""Keys that change nothing (config/effects.py): named with why, for the command line's warnings."""

from __future__ import annotations

import pytest

from aenet_exp.config.effects import TAYLOR_VALIDITY, doubtful_values, ineffective_keys

from helpers import compose_train


@pytest.mark.parametrize("override", ["augment.children=2", "augment.displacement=0.05", "augment.seed=3"])
def test_augment_keys_without_augmentation_are_named(override):
    key = override.split("=")[0]
    assert (key, "no children are made (augment=none); make them with augment=taylor") in \
        ineffective_keys(compose_train(override))
    assert not [k for k, _ in ineffective_keys(compose_train("augment=taylor", override)) if k.startswith("augment.")]


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
    assert doubtful_values(compose_train("augment.displacement=5")) == []  # no children: ineffective_keys names it
