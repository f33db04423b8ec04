"""``python -m aenet_exp export run=<run dir | model file | runs:/<run_id>[/path]> format=aenet [out=DIR] [rmin=Å]``
(options: :class:`~aenet_exp.config.schema.ExportConfig`)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from aenet_exp.config.schema import ExportConfig
from aenet_exp.destinations import replace_folder, writable_folder
from aenet_exp.errors import ConfigError, UserError
from aenet_exp.export.aenet_ascii import SUFFIX, check_exportable, write_aenet_ascii
from aenet_exp.files import temporary_path, write_atomically
from aenet_exp.model.locate import load_potential


class ExportError(UserError):
    """A potential that cannot be written in the format, or an output directory that cannot be written."""


def default_out(location: str) -> Path:
    """``<run dir>/aenet``, ``aenet`` beside a model file, or ``./aenet-<run_id>`` for a ``runs:/`` URI."""
    if location.startswith("runs:/"):
        return Path("aenet-" + location.removeprefix("runs:/").strip("/").split("/")[0])
    return (Path(location) if Path(location).is_dir() else Path(location).parent) / "aenet"


COMMITTEE_FILE = "committee.json"
MEMBER_FOLDER = re.compile(r"member_\d{3}")


def exported(path: Path) -> bool:
    """Whether ``path`` is something an export writes: a potential file, ``committee.json``, a member's folder of
    potential files, or a hidden temporary."""
    if path.name.startswith(".") or path.name == COMMITTEE_FILE or (path.is_file() and path.name.endswith(SUFFIX)):
        return True
    return path.is_dir() and MEMBER_FOLDER.fullmatch(path.name) is not None and all(map(exported, path.iterdir()))


def check_replaceable(out: Path) -> None:
    """ConfigError naming ``out`` when the folder holds something an export did not write (a previous export is
    replaced whole)."""
    foreign = sorted(p.name for p in out.iterdir() if not exported(p)) if out.is_dir() else []
    if foreign:
        raise ConfigError("out", f"{out} holds files an export does not write ({', '.join(foreign[:3])}); give an "
                          "empty or new folder, or one a previous export wrote")


def write_committee(potential, out: Path, rmin: float | None) -> list[Path]:
    """A committee's members as ænet potentials in ``out/member_000``, ``member_001``, ... and ``committee.json``
    saying how to combine them (every member is checked before any file is written)."""
    members = [potential.member(k) for k in range(potential.members)]
    for member in members:
        check_exportable(member)
    written = []
    for k, member in enumerate(members):
        written += write_aenet_ascii(member, out / f"member_{k:03d}", rmin)
    calibration = potential.calibration
    recipe = {
        "members": [f"member_{k:03d}" for k in range(potential.members)],
        "energy": "the mean of the members' energies (eV); forces likewise (eV/Å)",
        "uncertainty": "the members' standard deviation (unbiased, n - 1) times sigma_scale",
        "sigma_scale": {"energy": calibration.energy, "forces": calibration.factor("force")},
    }
    written.append(out / COMMITTEE_FILE)
    write_atomically(written[-1], json.dumps(recipe, indent=2) + "\n")
    return written


def export(options: ExportConfig) -> list[Path]:
    """Run ``export`` with its ``options``; returns the files written (UserError on bad input).

    The files are written into a hidden folder beside ``out``, which then replaces ``out`` whole: no file of a
    previous export (say the members 2 and 3 of a larger committee) stays among the new ones."""
    location = options.run
    out = writable_folder(options.out or str(default_out(location)), "out")
    check_replaceable(out)
    potential = load_potential(location, options.tracking.uri, key="run")
    fresh = temporary_path(out)
    try:
        written = write_potential(potential, fresh, options.rmin)
        replace_folder(out, fresh)
    except ValueError as error:
        raise ExportError(f"cannot export {location} to ænet's format: {error}") from None
    except OSError as error:
        raise ExportError(f"out={out}: {error}") from None
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return [out / path.relative_to(fresh) for path in written]


def write_potential(potential, out: Path, rmin: float | None) -> list[Path]:
    """A single potential's or a committee's files in ``out``."""
    if potential.members == 1:
        return write_aenet_ascii(potential, out, rmin)
    return write_committee(potential, out, rmin)
