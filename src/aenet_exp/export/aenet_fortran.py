"""Running ænet's own Fortran ``predict.x`` on a potential exported by :mod:`aenet_exp.export.aenet_ascii`: convert
the ``X.pytorch.nn.ascii`` files to ænet's binary networks with aenet-PyTorch's ``nnASCII2bin.x``, write a
``predict.x`` input, read its energies and forces back. For checking an export, and for measuring against it
(``docs/inference.md`` says how to build both programs). The programs are found through ``AENET_PREDICT`` and
``AENET_NNASCII2BIN``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PREDICT_ENV, CONVERTER_ENV = "AENET_PREDICT", "AENET_NNASCII2BIN"
ASCII_SUFFIX = ".pytorch.nn.ascii"


def programs() -> tuple[str, str] | None:
    """``predict.x`` and ``nnASCII2bin.x`` from the environment, when both are set and exist."""
    predict, converter = os.environ.get(PREDICT_ENV), os.environ.get(CONVERTER_ENV)
    if predict and converter and Path(predict).is_file() and Path(converter).is_file():
        return predict, converter
    return None


def to_binary(converter: str, ascii_files: Sequence[Path]) -> dict[str, Path]:
    """Each ``X.pytorch.nn.ascii`` converted to ``X.nn`` beside it; species -> binary file."""
    networks = {}
    for path in ascii_files:
        species = Path(path).name.removesuffix(ASCII_SUFFIX)
        binary = Path(path).with_name(f"{species}.nn")
        subprocess.run([converter, str(path), str(binary)], check=True, capture_output=True)
        networks[species] = binary
    return networks


def write_xsf(path: Path, symbols: Sequence[str], positions: np.ndarray, cell: np.ndarray | None) -> Path:
    """One structure as ænet's XSF (symbols, not atomic numbers: ``predict.x`` maps numbers to no species): a
    ``CRYSTAL`` with ``PRIMVEC`` rows (Å) when periodic, else an ``ATOMS`` block; positions ``(n_atoms, 3)`` Å."""
    rows = [f"{s} {x:.10f} {y:.10f} {z:.10f}" for s, (x, y, z) in zip(symbols, np.asarray(positions))]
    if cell is None:
        text = "\n".join(["ATOMS", *rows, ""])
    else:
        vectors = [" ".join(f"{v:.10f}" for v in row) for row in np.asarray(cell)]
        text = "\n".join(["CRYSTAL", "PRIMVEC", *vectors, "PRIMCOORD", f"{len(rows)} 1", *rows, ""])
    Path(path).write_text(text)
    return Path(path)


def predict_input(networks: dict[str, Path], structures: Sequence[Path], forces: bool = True) -> str:
    """``predict.x``'s input: the species and their networks (paths quoted: a bare ``/`` ends a Fortran list-directed
    name), forces or not, the XSF files to evaluate."""
    lines = ["TYPES", str(len(networks)), *networks, "", "NETWORKS"]
    lines += [f'  {species}  "{path}"' for species, path in networks.items()]
    lines += ["", *(["FORCES", ""] if forces else []), "FILES", str(len(structures)), *map(str, structures), ""]
    return "\n".join(lines)


@dataclass
class Predicted:
    """One structure as ``predict.x`` printed it: total energy (eV, 8 decimals) and forces ``(n_atoms, 3)`` (eV/Å,
    6 decimals), in the order of the atoms in the file."""

    energy: float
    forces: np.ndarray


ATOM_ROW = re.compile(r"^\s*[A-Z][a-z]?(\s+-?\d+\.\d+){6}\s*$", re.M)


def read_output(text: str) -> list[Predicted]:
    """Every structure's energy and forces from ``predict.x``'s output ``text``."""
    found = []
    for block in text.split("Structure number")[1:]:
        energy = float(re.search(r"Total energy\s+:\s+(\S+)", block).group(1))
        rows = [match.group(0).split()[4:7] for match in ATOM_ROW.finditer(block)]
        found.append(Predicted(energy, np.array(rows, dtype=float).reshape(-1, 3)))
    return found


def run_predict(predict: str, input_text: str, directory: Path) -> list[Predicted]:
    """Run ``predict.x`` on ``input_text`` in ``directory``: what it printed for each structure."""
    (directory / "predict.in").write_text(input_text)
    result = subprocess.run([predict, "predict.in"], cwd=directory, check=True, capture_output=True, text=True)
    return read_output(result.stdout)
