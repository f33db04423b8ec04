"""Settings that cannot fit in memory are refused before anything is allocated (training/memory.py)."""

from __future__ import annotations

import pytest

from aenet_exp.build.training import run_training
from aenet_exp.errors import ConfigError
from aenet_exp.training.memory import Need, check_memory, machine_memory


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["model.hidden=[100000000,10]", "model.activations=[tanh,tanh]"], "model.hidden"),
        (["descriptor.rad_cutoff=150", "descriptor.rad_order=10", "optimizer.batchsize=32"], "descriptor.rad_cutoff"),
        (["descriptor.ang_cutoff=30"], "descriptor.ang_cutoff"),
        (["descriptor.rad_order=10000000"], "descriptor.rad_order"),
    ],
)
def test_a_setting_that_cannot_fit_is_refused_with_the_estimate(fast_config, tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=rf"^{key}: would need about [\d.e+]+ GiB for the .*, more than this machine's"):
        run_training(fast_config(*overrides), tmp_path)
    assert not (tmp_path / "potential.pt").exists()


def test_the_largest_need_decides():
    needs = [Need("model.hidden", 3e9, "networks"), Need("descriptor.rad_cutoff", 5e9, "pair terms")]
    check_memory(needs, available=6e9)
    with pytest.raises(ConfigError, match="^descriptor.rad_cutoff: would need about 4.66 GiB for the pair terms"):
        check_memory(needs, available=4e9)
    assert machine_memory() > 2**30


@pytest.mark.parametrize(
    "overrides, key, what",
    [
        (["committee=deep", "committee.members=100000000", "committee.calibrate=false"], "committee.members",
         "networks"),
        (["augment=taylor", "augment.children=1000000000"], "augment.children", "Taylor children"),
        (["optimizer=ekf", "scheduler=none", "model.hidden=[1500,1500]", "model.activations=[tanh,tanh]"],
         "model.hidden", "Kalman covariance of optimizer=ekf"),
    ],
)
def test_members_children_and_the_kalman_covariance_are_estimated(fast_config, tmp_path, overrides, key, what):
    with pytest.raises(ConfigError, match=rf"^{key}: would need about [\d.e+]+ GiB for the {what}"):
        run_training(fast_config(*overrides), tmp_path)
    assert not (tmp_path / "potential.pt").exists()


def test_the_kalman_covariance_is_a_square_per_block():
    from aenet_exp.training.memory import kalman_need

    layouts = {"O": [3], "Ti": [3]}  # 2 features -> 3 -> 1: layers of 9 and 4 weights, 13 per species
    assert kalman_need(2, layouts, "species").bytes == 2 * 8 * 2 * 13**2
    assert kalman_need(2, layouts, "layer").bytes == 2 * 8 * 2 * (9**2 + 4**2)
