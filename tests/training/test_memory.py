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
