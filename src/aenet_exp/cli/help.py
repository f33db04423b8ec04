"""``python -m aenet_exp <command> --help``: the command's groups with their options and every key with its
type, default, unit and meaning, from the schema (the same source as ``docs/configuration.md``); and
``python -m aenet_exp --help``, the commands."""

from __future__ import annotations

import dataclasses
import textwrap

from aenet_exp.config.commands import COMMANDS, Command
from aenet_exp.config.docs import REQUIRED, command_groups, default_choices, documented_fields, \
    group_options, shown_default
from aenet_exp.config.store import option_schemas

MEANING_WIDTH = 70
TEXT_WIDTH = 110
GROUPS_SENTENCE = ("Choose a group's option with group=option (the files in conf/<group>/); the defaults are marked "
                   "with *, and a group option sets only what it changes. ")
SWEEP_SENTENCE = "Sweep with -m key=a,b. "


def type_name(field: dataclasses.Field) -> str:
    """A short type: int, float, bool, str, list, dict, any (``?`` when null is allowed)."""
    text = str(field.type)
    optional = text.startswith("Optional[") or field.default is None
    outer = text.removeprefix("Optional[").split("[")[0].rstrip("]")
    return (outer if outer in ("bool", "int", "float", "str", "list", "dict") else "any") + ("?" if optional else "")


def key_lines(prefix: str, node: type, missing: str = "(option)") -> list[str]:
    """One entry per key of ``node``: its dotted name, type, default and meaning [unit], the meaning wrapped."""
    lines = []
    for f in documented_fields(node):
        unit = f" [{f.metadata['unit']}]" if f.metadata.get("unit") else ""
        head = f"    {prefix + f.name:<34} {type_name(f):<7} {shown_default(f, missing):<12}"
        meaning = textwrap.wrap(f"{f.metadata['meaning']}{unit}", MEANING_WIDTH) or [""]
        lines += [f"{head} {meaning[0]}", *(" " * (len(head) + 1) + more for more in meaning[1:])]
    return lines


def header(command: Command, groups: list[str]) -> list[str]:
    """Usage, what the command does and how its keys are set, examples."""
    about = (f"{command.summary[0].upper()}{command.summary[1:]}. Set any key below with key=value. "
             f"{GROUPS_SENTENCE if groups else ''}{SWEEP_SENTENCE if command.name == 'train' else ''}"
             "Every key, with the ænet name it implements where it has one: docs/configuration.md.")
    return [f"usage: python -m aenet_exp {command.usage}", "", *textwrap.wrap(about, TEXT_WIDTH), "", "examples:",
            *(f"  {example}" for example in command.examples), ""]


def command_help(name: str) -> str:
    """``<name> --help``."""
    command = COMMANDS[name]
    groups = command_groups(command)
    lines = header(command, groups)
    if groups:
        choices = default_choices(command)
        lines.append("groups (option* = default):")
        for group in groups:
            options = [f"{o}*" if o == choices.get(group) else o for o in group_options(group)]
            lines.append(f"  {group:<16} {', '.join(options)}")
        lines.append("")
    lines += ["keys (type, default, meaning [unit]):", "  top level", *key_lines("", command.schema, REQUIRED)]
    for group in groups:
        for option, node in option_schemas(group).items():
            lines += [f"  {group}={option}" if option else f"  {group}", *key_lines(f"{group}.", node)]
    return "\n".join(lines)


def usage() -> str:
    """``python -m aenet_exp --help``: the commands, what each does, an example of each."""
    names = ",".join(COMMANDS)
    lines = [f"usage: python -m aenet_exp {{{names}}} [key=value ...] [hydra options]",
             "       python -m aenet_exp <command> --help   (the command's keys: type, default, meaning)", "",
             "commands:"]
    lines += [f"  {command.name:<9} {command.summary}" for command in COMMANDS.values()]
    lines += ["", "examples:", *(f"  {command.examples[0]}" for command in COMMANDS.values())]
    return "\n".join(lines) + "\n"
