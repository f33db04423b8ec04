"""Energy targets and normalisation statistics, fitted on the training split only."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aenet_exp.config.validation import ConfigError
from aenet_exp.data import DataError, read_structures


def isolated_atom_energies(path: str | Path) -> dict[str, float]:
    """``{symbol: eV}`` from a structure file holding one single-atom structure per species."""
    energies: dict[str, float] = {}
    for structure in read_structures(path):
        if structure.n_atoms != 1 or structure.energy is None:
            raise DataError(
                structure.source,
                f"frame {structure.frame}: expected isolated atoms (one atom with an energy each)",
            )
        energies[structure.species[0]] = structure.energy
    return energies


def resolve_atomic_energies(value: Any, energy_target: str, species: Sequence[str]) -> dict[str, float] | None:
    """The per-species reference energies (eV) of ``normalization.E_atomic``, checked against ``species``.

    ``value`` is a mapping or the path of a file of isolated atoms. Returns None for total-energy
    training without references.
    """
    if value is None:
        if energy_target == "cohesive":
            raise ConfigError(
                "normalization.E_atomic",
                f"cohesive energies need atomic reference energies for {sorted(species)}; "
                "give E_atomic={symbol: eV} or a file of isolated atoms, or set normalization.energy_target=total",
            )
        return None
    energies = dict(value) if isinstance(value, Mapping) else isolated_atom_energies(value)
    missing = sorted(set(species) - set(energies))
    if missing:
        raise ConfigError("normalization.E_atomic", f"no reference energy for species {missing} of the data")
    try:
        return {s: float(energies[s]) for s in species}
    except (TypeError, ValueError):
        raise ConfigError("normalization.E_atomic", f"expected energies in eV, got {energies}") from None


def energy_normalization(
    per_atom: np.ndarray, shift: float | None, scaling: float | None, enabled: bool
) -> tuple[float, float]:
    """ænet's per-atom energy shift and scale mapping training energies onto [−1, 1].

    Computed: ``shift = (max + min) / 2``, ``scale = (max − min) / 2``. A given shift fixes
    the scale as the largest deviation from it; a given scale keeps the computed shift.
    Disabled: ``(0, 1)``.
    """
    if not enabled:
        return 0.0, 1.0
    low, high = float(per_atom.min()), float(per_atom.max())
    shift = (high + low) / 2 if shift is None else float(shift)
    if scaling is None:
        scaling = max(abs(high - shift), abs(low - shift))
    return shift, (float(scaling) if scaling > 0 else 1.0)


def load_feature_stats(path: str | Path, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` and ``std`` arrays ``(n_features,)`` from a ``.npz`` or ``.json`` file."""
    path = Path(path)
    key = "normalization.feature_stats"
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as stored:
                mean, std = np.asarray(stored["mean"], float), np.asarray(stored["std"], float)
        else:
            stored = json.loads(path.read_text())
            mean, std = np.asarray(stored["mean"], float), np.asarray(stored["std"], float)
    except (KeyError, ValueError, TypeError, OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(key, f"{path}: expected arrays 'mean' and 'std' ({exc})") from None
    for name, array in (("mean", mean), ("std", std)):
        if array.shape != (n_features,):
            raise ConfigError(key, f"{path}: '{name}' has shape {array.shape}, the descriptor has {n_features} features")
        if not np.isfinite(array).all():
            raise ConfigError(key, f"{path}: '{name}' contains NaN or inf")
    if (std <= 0).any():
        raise ConfigError(key, f"{path}: 'std' must be positive")
    return mean.astype(float), std.astype(float)
