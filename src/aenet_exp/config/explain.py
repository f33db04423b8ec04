"""Hydra's and OmegaConf's composition errors as one line a person can act on (``did you mean ...?``)."""

from __future__ import annotations

import dataclasses
import difflib
import re

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from aenet_exp.config.schema import OPTION_SCHEMAS, TrainConfig
from aenet_exp.config.store import GROUP_SCHEMAS, option_schemas
from aenet_exp.errors import first_line

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
AMBIGUOUS = re.compile(r"^Ambiguous value for argument '([^=]+)=(.*)'$")


def schema_keys(root: type = TrainConfig) -> list[str]:
    """Every dotted key the command whose schema is ``root`` knows (of all options of a group with one dataclass
    per option)."""
    names = [f.name for f in dataclasses.fields(root)]
    groups = [name for name in names if name in GROUP_SCHEMAS or name in OPTION_SCHEMAS]
    keys = [name for name in names if name not in groups]
    for group in groups:
        for node in option_schemas(group).values():
            keys += [f"{group}.{f.name}" for f in dataclasses.fields(node) if f"{group}.{f.name}" not in keys]
    return keys


def did_you_mean(key: str, root: type = TrainConfig) -> str:
    """`` (did you mean a, b?)`` with the keys of ``root``'s command closest to ``key``, or nothing."""
    known = schema_keys(root)
    group = key.rsplit(".", 1)[0] if "." in key else None
    candidates = [k for k in known if group is None or k.startswith(f"{group}.")] or known
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def unknown_key(key: str, root: type = TrainConfig) -> str:
    """The message (after ``key:``) for a key that the schema ``root`` of the command does not have."""
    group = key.rsplit(".", 1)[0] if "." in key else "the top level"
    readers = [option for option, node in OPTION_SCHEMAS.get(group, {}).items()
               if any(f"{group}.{f.name}" == key for f in dataclasses.fields(node))]
    if readers:
        chosen = " or ".join(f"{group}={option}" for option in readers)
        return f"a key of {chosen} only, not of the {group} chosen; choose it, e.g. {group}={readers[0]} {key}=..."
    return f"no such key in {group}{did_you_mean(key, root)}"


def group_options(group: str) -> list[str]:
    from aenet_exp.config.docs import group_options as options

    return options(group)


def composition_error_line(error: Exception, root: type = TrainConfig) -> str:
    """One line for a Hydra or OmegaConf error raised while composing the config (schema ``root``) from the
    command line."""
    if isinstance(error, MissingConfigException):
        missing = str(getattr(error, "missing_cfg_file", "") or "")
        group, _, option = missing.rpartition("/")
        if group.startswith("hydra/"):  # a launcher or sweeper: a Hydra plugin
            return (f"{group}={option}: not installed; the launchers (joblib, slurm) and the Optuna sweeper come with "
                    "pip install 'aenet_exp[sweeps]' (pip install -e '.[sweeps]' in a checkout)")
        if group and option:
            return f"{group}={option}: no such option; the options of {group} are {', '.join(group_options(group))}"
        return first_line(error)
    if isinstance(error, OverrideParseException):
        return f"cannot parse the override: {first_line(error)} (grammar: {GRAMMAR})"
    ambiguous = AMBIGUOUS.search(first_line(error))
    if ambiguous:  # key=a,b without -m
        key, values = ambiguous.group(1), ambiguous.group(2)
        return (f"{key}: {values} is several values; write a list as {key}=[{values}], a text with commas as "
                f"{key}='{values}', or sweep over them with -m (train)")
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    key = getattr(cause, "full_key", None) or override_key(error)
    if "not in struct" in str(cause) or "Could not override" in str(error):
        return f"{key}: {unknown_key(key, root)}" if key else first_line(error)
    return f"{key}: {first_line(cause)}" if key else first_line(error)


def override_key(error: Exception) -> str | None:
    """The key of ``Could not override 'a.b'`` / ``Error merging override a.b=...`` messages."""
    text = first_line(error)
    for marker, end in (("Could not override '", "'"), ("Error merging override ", "=")):
        if marker in text:
            return text.split(marker, 1)[1].split(end, 1)[0].lstrip("+~")
    return None
