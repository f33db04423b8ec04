"""Keys that change nothing (config/effects.py): named with why, for the command line's warnings."""

from __future__ import annotations

import pytest

from aenet_exp.config.effects import ineffective_keys

from helpers import compose_train


@pytest.mark.parametrize("override", ["augment.children=2", "augment.displacement=0.05", "augment.seed=3"])
def test_augment_keys_without_augmentation_are_named(override):
    key = override.split("=")[0]
    assert (key, "no children are made (augment=none); make them with augment=taylor") in \
        ineffective_keys(compose_train(override))
    assert not [k for k, _ in ineffective_keys(compose_train("augment=taylor", override)) if k.startswith("augment.")]
