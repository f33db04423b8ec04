"""The trained potential as an MLflow pyfunc model: ``predict(structures)`` returns energies in eV.

The model is logged "from code": MLflow runs :mod:`aenet_exp.tracking.pyfunc_code` to build it on
loading, so nothing is unpickled; the weights are the model's artifact ``potential.pt``, read with
``weights_only=True``.

``mlflow.pyfunc.load_model("runs:/<run_id>/model").predict(model_input)`` takes

- a list of ``ase.Atoms`` or :class:`aenet_exp.data.Structure` (a single one is accepted too), or
- a ``pandas.DataFrame`` with one structure per row: ``symbols`` (chemical symbols), ``positions``
  (``(n_atoms, 3)``, Å), optionally ``cell`` (``(3, 3)`` lattice vectors as rows, Å; None or a
  missing column for a molecule) and ``pbc`` (one bool or three; by default periodic along all three
  directions when the row has a cell),

and returns a float64 numpy array ``(n_structures,)`` of total energies in eV, in input order; a
committee returns a ``pandas.DataFrame`` with the columns ``energy`` (its members' mean, eV) and
``energy_std`` (their calibrated standard deviation, eV).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms
from mlflow.entities import LoggedModel
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.models import Model
from mlflow.pyfunc import PythonModel, PythonModelContext, save_model
from packaging.version import Version

from aenet_exp.calculator import Calculator
from aenet_exp.data import Structure

MODEL_NAME = "model"  # the model's name within its run: runs:/<run_id>/model
POTENTIAL_ARTIFACT = "potential"  # key of the potential file among the model's artifacts
CODE_FILE = Path(__file__).with_name("pyfunc_code.py")
REQUIRED_COLUMNS = ("symbols", "positions")
EXPECTED_INPUT = (
    "a list of ase.Atoms or aenet_exp Structures, or a DataFrame with columns "
    "symbols, positions and optionally cell, pbc (one structure per row)"
)


class PotentialModel(PythonModel):
    """Total energies (eV) of structures under a trained potential, evaluated in float64 in batches."""

    # MLflow's type-hint validation knows no Atoms: off, and model_input unannotated (MLflow would try to
    # infer a signature from its hint when saving, and warn); predict checks its input itself.
    _skip_type_hint_validation = True

    def load_context(self, context: PythonModelContext) -> None:
        self.calculator = Calculator.load(context.artifacts[POTENTIAL_ARTIFACT])

    def predict(self, context: PythonModelContext, model_input, params: dict | None = None) -> np.ndarray | pd.DataFrame:
        """Energies ``(n_structures,)`` in eV of ``model_input`` (see the module docstring); a committee's as a frame
        with columns ``energy`` (the members' mean) and ``energy_std`` (their calibrated standard deviation), eV."""
        structures = structures_of(model_input)
        predicted = self.calculator.predict(structures)
        if predicted.energy_std is None:
            return predicted.energy_pred
        return pd.DataFrame({"energy": predicted.energy_pred, "energy_std": predicted.energy_std})


def structures_of(model_input: Any) -> list[Atoms | Structure]:
    """The structures of a pyfunc input; ValueError naming what is wrong otherwise."""
    if isinstance(model_input, pd.DataFrame):
        return structures_from_frame(model_input)
    if isinstance(model_input, (Atoms, Structure)):
        return [model_input]
    if isinstance(model_input, (list, tuple)):
        wrong = next((item for item in model_input if not isinstance(item, (Atoms, Structure))), None)
        if wrong is None:
            return list(model_input)
        raise ValueError(f"model input: expected {EXPECTED_INPUT}; the list holds a {type(wrong).__name__}")
    raise ValueError(f"model input: expected {EXPECTED_INPUT}, got {type(model_input).__name__}")


def structures_from_frame(frame: pd.DataFrame) -> list[Structure]:
    """One :class:`Structure` per row of ``frame`` (columns as in the module docstring)."""
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"model input: the DataFrame has no column {missing[0]!r}; expected {EXPECTED_INPUT}")
    return [structure_from_row(row, index) for index, row in enumerate(frame.to_dict("records"))]


def structure_from_row(row: Mapping[str, Any], index: int) -> Structure:
    """The structure of one DataFrame row; errors name the row."""
    source = f"model input row {index}"
    if isinstance(row["symbols"], str):
        raise ValueError(f"{source}: symbols: expected a list of chemical symbols, got the string {row['symbols']!r}")
    cell = _present(row.get("cell"))
    pbc = _present(row.get("pbc"))
    try:
        positions = np.asarray(row["positions"], dtype=np.float64)
        cell = None if cell is None else np.asarray(cell, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: positions and cell must be numeric arrays ({error})") from None
    periodic = (cell is not None) if pbc is None else pbc
    return Structure(row["symbols"], positions, cell=cell, pbc=periodic, source=source)


def _present(value: Any) -> Any:
    """``value``, or None where a DataFrame cell holds nothing (None or a scalar NaN)."""
    return None if value is None or (np.ndim(value) == 0 and pd.isna(value)) else value


def pip_requirements() -> list[str]:
    """This package and torch at their installed versions (given, so MLflow infers nothing)."""
    return [f"aenet_exp=={version('aenet_exp')}", f"torch=={Version(version('torch')).base_version}"]


def save_pyfunc(path: Path, potential_file: Path, model: LoggedModel) -> None:
    """Write the pyfunc model directory ``path`` holding ``potential_file``, described as ``model``."""
    metadata = Model(
        artifact_path=model.artifact_location,
        run_id=model.source_run_id,
        model_id=model.model_id,
        model_uuid=model.model_id,
    )
    with _no_progress_bars():
        save_model(
            path,
            python_model=str(CODE_FILE),
            artifacts={POTENTIAL_ARTIFACT: str(potential_file)},
            pip_requirements=pip_requirements(),
            mlflow_model=metadata,
        )


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence MLflow's progress bar for copying the potential into the model (a training log needs none)."""
    name = MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before
