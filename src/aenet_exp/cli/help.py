"""``python -m aenet_exp train --help``: every group with its options and every key with its type, default,
unit and meaning, from the schema (the same source as ``docs/configuration.md``)."""

from __future__ import annotations

import dataclasses
import textwrap
from importlib.resources import files

from omegaconf import OmegaConf

from aenet_exp.config import schema
from aenet_exp.config.docs import field_default, group_options
from aenet_exp.config.store import GROUP_SCHEMAS

HEADER = """usage: python -m aenet_exp train [group=option ...] [key=value ...] [-m] [--cfg job]

Train a potential. Choose a group's option with group=option (the files in conf/<group>/), set any key
below with key=value, sweep with -m key=a,b. The defaults are marked with *; a group option sets only what
it changes. Every key, with the ænet name it implements: docs/configuration.md.

examples:
  python -m aenet_exp train force=subsampled optimizer.mu=3e-3
  python -m aenet_exp train data.path='my_dft/*.xsf' normalization.E_atomic='{O: -432.5, Ti: -1604.6}'
  python -m aenet_exp train -m optimizer.mu=1e-3,3e-3 force.weight=0.1,0.3
"""
MEANING_WIDTH = 70


def default_choices() -> dict[str, str]:
    """The option each group takes when none is given (``conf/train.yaml``'s defaults list)."""
    defaults = OmegaConf.create(files("aenet_exp.conf").joinpath("train.yaml").read_text()).defaults
    return {key: str(value) for entry in defaults if OmegaConf.is_dict(entry) for key, value in entry.items()
            if not key.startswith("override")}


def type_name(field: dataclasses.Field) -> str:
    """A short type: int, float, bool, str, list, dict, any (``?`` when null is allowed)."""
    text = str(field.type)
    optional = "Optional" in text or field.default is None
    for name in ("bool", "int", "float", "str", "list", "dict"):
        if name in text:
            return name + ("?" if optional else "")
    return "any"


def key_lines(prefix: str, node: type) -> list[str]:
    lines = []
    for f in dataclasses.fields(node):
        if "meaning" not in f.metadata:
            continue
        default = field_default(f)
        shown = "(option)" if default is dataclasses.MISSING or str(default) == "???" else OmegaConf.to_yaml(
            {"v": default}).strip().removeprefix("v:").strip() or "null"
        unit = f" [{f.metadata['unit']}]" if f.metadata.get("unit") else ""
        head = f"    {prefix + f.name:<34} {type_name(f):<7} {shown:<12}"
        meaning = textwrap.wrap(f"{f.metadata['meaning']}{unit}", MEANING_WIDTH) or [""]
        lines += [f"{head} {meaning[0]}", *(" " * (len(head) + 1) + more for more in meaning[1:])]
    return lines


def train_help() -> str:
    choices = default_choices()
    lines = [HEADER, "groups (option* = default):"]
    for group in ["optimizer", *GROUP_SCHEMAS]:
        options = [f"{o}*" if o == choices.get(group) else o for o in group_options(group)]
        lines.append(f"  {group:<16} {', '.join(options)}")
    lines += ["", "keys (type, default, meaning [unit]):", "  top level", *key_lines("", schema.TrainConfig)]
    for group, node in GROUP_SCHEMAS.items():
        lines += [f"  {group}", *key_lines(f"{group}.", node)]
    for name, node in schema.OPTIMIZER_SCHEMAS.items():
        lines += [f"  optimizer={name}", *key_lines("optimizer.", node)]
    return "\n".join(lines)
