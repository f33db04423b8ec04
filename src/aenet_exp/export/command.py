"""``python -m aenet_exp export run=<run dir | model file | runs:/<run_id>[/path]> format=aenet [out=DIR] [rmin=Å]``
(options: :class:`~aenet_exp.config.schema.ExportConfig`)."""

from __future__ import annotations

import json
from pathlib import Path

from aenet_exp.config.schema import ExportConfig
from aenet_exp.errors import UserError
from aenet_exp.export.aenet_ascii import check_exportable, write_aenet_ascii
from aenet_exp.files import write_atomically
from aenet_exp.model.locate import load_potential


class ExportError(UserError):
    """A potential that cannot be written in the format, or an output directory that cannot be written."""


def default_out(location: str) -> Path:
    """``<run dir>/aenet``, ``aenet`` beside a model file, or ``./aenet-<run_id>`` for a ``runs:/`` URI."""
    if location.startswith("runs:/"):
        return Path("aenet-" + location.removeprefix("runs:/").strip("/").split("/")[0])
    return (Path(location) if Path(location).is_dir() else Path(location).parent) / "aenet"


COMMITTEE_FILE = "committee.json"


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
    """Run ``export`` with its ``options``; returns the files written (UserError on bad input)."""
    location = options.run
    potential = load_potential(location, options.tracking.uri, key="run")
    out = Path(options.out) if options.out else default_out(location)
    try:
        if potential.members == 1:
            return write_aenet_ascii(potential, out, options.rmin)
        return write_committee(potential, out, options.rmin)
    except ValueError as error:
        raise ExportError(f"cannot export {location} to ænet's format: {error}") from None
    except OSError as error:
        raise ExportError(f"out={out}: {error}") from None
