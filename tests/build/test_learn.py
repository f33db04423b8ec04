"""learn's composition: bad keys refused in one line before anything runs, warnings for keys an option does not
read, a generation's training config, a resumed campaign's config."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aenet_exp.build.learn import generation_config
from aenet_exp.build.prepare import prepare_learn, resumed_campaign_config
from aenet_exp.errors import AenetWarning, ConfigError

from helpers import compose_command


def learn_config(*overrides: str):
    return compose_command("learn", *overrides)


@pytest.mark.parametrize("overrides, message", [
    (["select.trust_low=0.5", "select.trust_high=0.5"], "select.trust_low: is 0.5, but must be below select.trust_high"),
    (["explore.temperatures=[300,-5]"], "explore.temperatures: expected a non-empty list of positive temperatures"),
    (["explore.temperatures=[]"], "explore.temperatures: expected a non-empty list of positive temperatures"),
    (["oracle=ase", "oracle.calculator=ase.calculators.nowhere.Nothing"], "oracle.calculator: cannot import ase.calculators.nowhere"),
    (["oracle=ase"], "oracle.calculator: expected the calculator's import path with oracle=ase"),
    (["oracle=command", "oracle.command='run_dft.sh in.xyz {output}'"], "oracle.command: the command must contain {input}"),
    (["oracle=command"], "oracle.command: expected a shell command with oracle=command"),
    (["committee=none"], "committee: a campaign sorts frames by its committee's disagreement"),
    (["committee.members=1", "committee.calibrate=false"], "committee: a campaign sorts frames by its committee's"),
    (["campaign.converged=0"], "campaign.converged: expected a fraction in (0, 1]"),
    (["explore.every=0"], "explore.every: expected a positive number of steps"),
])
def test_bad_keys_are_refused_naming_them(overrides, message):
    with pytest.raises(ConfigError) as raised:
        prepare_learn(learn_config(*overrides))
    assert str(raised.value).startswith(message), str(raised.value)


def test_the_embedded_default_is_a_valid_campaign():
    with warnings.catch_warnings():
        warnings.simplefilter("error", AenetWarning)
        prepare_learn(learn_config())


def test_a_generation_trains_on_the_seed_and_the_labels_from_the_previous_weights(tmp_path):
    cfg = learn_config()
    labels, previous = tmp_path / "labels.xyz", tmp_path / "generations" / "000" / "run" / "potential.pt"
    train = generation_config(cfg, labels, previous, tmp_path / "generations" / "001" / "run")
    assert train.data.path == [cfg.data.path, str(labels)]
    assert train.init_from == str(previous) and train.resume is None
    assert not {"explore", "select", "oracle", "campaign"} & set(train.keys())
    first = generation_config(cfg, None, None, tmp_path / "generations" / "000" / "run")
    assert first.data.path == [cfg.data.path] and first.init_from is None


def test_a_half_trained_generation_resumes(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"")
    train = generation_config(learn_config(), tmp_path / "labels.xyz", tmp_path / "previous.pt", run_dir)
    assert train.resume == str(run_dir) and train.init_from is None


def test_a_resumed_campaign_keeps_its_config_but_may_go_further(tmp_path):
    started = learn_config("explore.steps=40", "select.max_per_generation=3", "campaign.generations=5")
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(started))
    again = ["resume=" + str(tmp_path), "explore.steps=40", "campaign.generations=9"]
    cfg = resumed_campaign_config(learn_config(*again), again)
    assert cfg.explore.steps == 40 and cfg.select.max_per_generation == 3 and cfg.campaign.generations == 9
    assert cfg.resume == str(tmp_path)
    unsaid = ["resume=" + str(tmp_path)]
    assert resumed_campaign_config(learn_config(*unsaid, "campaign.generations=2"), unsaid).campaign.generations == 5
    changed = ["resume=" + str(tmp_path), "explore.steps=80"]
    with pytest.raises(ConfigError, match="resume: continues the campaign as it was configured; explore.steps cannot change"):
        resumed_campaign_config(learn_config(*changed), changed)
    with pytest.raises(ConfigError, match="resume: no config.yaml in"):
        resumed_campaign_config(learn_config("resume=" + str(tmp_path / "nowhere")), [])


def test_a_campaign_resumes_with_the_options_it_chose(tmp_path):
    """The stored options (npt, a command oracle) replace the defaults (md, emt) with their own keys; a config
    written when every option carried every key of its group resumes with the keys its options read."""
    started = learn_config("explore=npt", "explore.pressure=2.0", "oracle=command", "oracle.command='x {input} {output}'")
    written = OmegaConf.to_container(started)
    written["scheduler"] |= {"min_lr": 0.0, "factor": 0.5}  # the layout before per-option dataclasses
    written["explore"] |= {"friction": 0.02}
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(written))
    unsaid = ["resume=" + str(tmp_path)]
    cfg = resumed_campaign_config(learn_config(*unsaid), unsaid)
    assert cfg.explore.name == "npt" and cfg.explore.pressure == 2.0 and "friction" not in cfg.explore
    assert cfg.oracle.command == "x {input} {output}" and "min_lr" not in cfg.scheduler
