"""The generated configuration reference stays in step with the schema."""

from __future__ import annotations

import dataclasses
import re

from aenet_exp.config.commands import COMMANDS
from aenet_exp.config.docs import configuration_markdown

from helpers import ROOT


def test_configuration_reference_is_current():
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == configuration_markdown(), "docs/configuration.md is stale: run python scripts/gen_config_docs.py"


def test_configuration_reference_names_every_reference_parameter():
    text = configuration_markdown()
    for name in ["iterations", "testpercent", "force_weight", "force_fraction", "force_sampling",
                 "force_resample_each_epoch", "force_min_structures_per_epoch", "force_scale_unbiased",
                 "epochs_per_force_window", "cached_features", "cached_features_for_force", "cache_neighbors",
                 "cache_triplets", "cache_persist_dir", "cache_scope", "num_workers", "prefetch_factor",
                 "persistent_workers", "device", "precision", "memory_mode", "energy_target", "E_atomic",
                 "normalize_features", "normalize_energy", "feature_stats", "E_shift", "E_scaling", "max_energy",
                 "max_forces", "save_energies", "save_forces", "timing", "show_progress", "show_batch_progress",
                 "Adam.mu", "Adam.beta1", "Adam.beta2", "Adam.epsilon", "SGD.lr", "SGD.momentum", "method.batchsize",
                 "method.weight_decay"]:
        assert f"`{name}`" in text, name



def test_configuration_reference_has_a_section_per_command_with_its_keys():
    text = configuration_markdown()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    by_command = {section.split("\n", 1)[0].strip("`"): section for section in sections}
    assert list(by_command) == list(COMMANDS)
    for name, command in COMMANDS.items():
        for f in dataclasses.fields(command.schema):
            if "meaning" in f.metadata:
                assert f"| `{f.name}` |" in by_command[name], (name, f.name)
    assert "| `run` | (required) |" in by_command["select"]
    assert "[`tracking`](#tracking) (default `default`)" in by_command["ensemble"]
    assert "[`data`](#data) (default `sample`), [`augment`](#augment) (default `none`)" in by_command["build-db"]
