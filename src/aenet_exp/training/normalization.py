"""``normalization.*``: reference energies, energy targets and feature statistics, fitted on the training split only."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aenet_exp.data import DataError, read_structures
from aenet_exp.errors import ConfigError
from aenet_exp.training.columns import Columns
from aenet_exp.training.distributed import SINGLE, Ranks

# A feature whose std over the training atoms is below this share of its size is constant: it is
# left unscaled (std 1) rather than divided by rounding noise.
CONSTANT_FEATURE_RTOL = 1e-12


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

    ``value`` is a mapping or the path of a file of isolated atoms. Total-energy training uses no
    references: None.
    """
    if energy_target == "total":
        return None
    if value == FIT:
        raise ValueError("fitted references are resolved on the training split (training.dataset.prepare_data)")
    if value is None:
        raise ConfigError(
            "normalization.E_atomic",
            f"cohesive energies need atomic reference energies for {sorted(species)}; "
            "give E_atomic={symbol: eV} or a file of isolated atoms, or set normalization.energy_target=total",
        )
    energies = dict(value) if isinstance(value, Mapping) else isolated_atom_energies(value)
    missing = sorted(set(species) - set(energies))
    if missing:
        raise ConfigError("normalization.E_atomic", f"no reference energy for species {missing} of the data")
    try:
        return {s: float(energies[s]) for s in species}
    except (TypeError, ValueError):
        raise ConfigError("normalization.E_atomic", f"expected energies in eV, got {energies}") from None


FIT = "fit"  # normalization.E_atomic=fit: the reference energies are fitted to the training energies


def fit_reference_energies(
    columns: Columns, species: Sequence[str], fixed: Mapping[str, float]
) -> tuple[dict[str, float], float]:
    """Per-species reference energies (eV) by least squares, ``E ≈ Σ_s count_s·E_s``, over the structures of
    ``columns`` (the training split); ``fixed`` ones are held. Returns them (``species`` order) and the fit's
    RMSE per atom (eV/atom).

    ConfigError naming the species the structures cannot tell apart (counts proportional in every
    structure: a rank-deficient composition matrix).
    """
    position = {s: k for k, s in enumerate(columns.species)}
    counts = np.stack([columns.composition[:, position[s]] if s in position else np.zeros(len(columns))
                       for s in species], axis=1).astype(float)
    unknown = sorted(set(fixed) - set(species))
    if unknown:
        raise ConfigError("normalization.E_atomic_fixed", f"species {unknown} are not in the data's {list(species)}")
    free = [k for k, s in enumerate(species) if s not in fixed]
    held = [k for k, s in enumerate(species) if s in fixed]
    target = columns.energy - counts[:, held] @ np.array([float(fixed[species[k]]) for k in held])
    matrix = counts[:, free]
    inseparable = inseparable_species(matrix, [species[k] for k in free])
    if inseparable:
        raise ConfigError(
            "normalization.E_atomic",
            f"fit: the training structures cannot tell apart the reference energies of {inseparable} (their atom "
            "counts are proportional in every structure); give some of them with normalization.E_atomic_fixed="
            "{symbol: eV}, or all with normalization.E_atomic={...}, or train total energies "
            "(normalization.energy_target=total)",
        )
    solution = np.linalg.lstsq(matrix, target, rcond=None)[0] if free else np.zeros(0)
    fitted = {**{species[k]: float(v) for k, v in zip(free, solution)}, **{s: float(v) for s, v in fixed.items()}}
    residual = (matrix @ solution - target) / columns.n_atoms
    return {s: fitted[s] for s in species}, float(np.sqrt(np.mean(residual**2)))


def inseparable_species(matrix: np.ndarray, names: Sequence[str]) -> list[str]:
    """The species whose columns of ``matrix`` (structures × species counts) are linearly dependent."""
    if matrix.shape[1] == 0:
        return []
    _, singular, vt = np.linalg.svd(matrix, full_matrices=True)
    tolerance = max(matrix.shape) * np.finfo(float).eps * (singular.max() if singular.size else 0.0)
    rank = int((singular > tolerance).sum())
    if rank == matrix.shape[1]:
        return []
    null = vt[rank:]  # combinations of species that no structure can tell apart
    return [name for name, weight in zip(names, np.abs(null).max(axis=0)) if weight > 1e-8]


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


def feature_statistics(
    blocks, n_features: int, device: torch.device, ranks: Ranks = SINGLE
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ``(n_features,)`` of the raw features of ``blocks`` (float64 sums, added over ranks).

    A constant feature (std below :data:`CONSTANT_FEATURE_RTOL` of its size) gets std 1.
    """
    total, sq = (torch.zeros(n_features, dtype=torch.float64, device=device) for _ in range(2))
    count = 0
    for block in blocks:
        f = block.features.double()
        total, sq, count = total + f.sum(0), sq + f.square().sum(0), count + f.shape[0]
    sums = ranks.sum(torch.cat([total, sq, total.new_tensor([count])]))
    total, sq, count = sums[:n_features], sums[n_features : 2 * n_features], sums[2 * n_features]
    mean = (total / count).cpu().numpy()
    std = np.sqrt(np.maximum((sq / count).cpu().numpy() - mean**2, 0.0))
    return mean, np.where(std > CONSTANT_FEATURE_RTOL * np.maximum(1.0, np.abs(mean)), std, 1.0)


@dataclass
class Labels:
    """Energy targets of all structures in normalised units, placed per ``precision.memory_mode``.

    ``offset`` (float64, host) holds what normalisation takes away: ``N·shift + Σ E_atomic``.
    Reference forces travel with each batch (read where the batch is built).
    """

    target: torch.Tensor  # (n_structures,) ((E − offset) / N) / scale, per atom, normalised
    n_atoms: torch.Tensor  # (n_structures,)
    offset: np.ndarray  # (n_structures,) eV

    @classmethod
    def of(cls, columns: Columns, references: Mapping[str, float] | None, shift: float, scale: float,
           dtype: torch.dtype, device: torch.device) -> "Labels":
        """Targets computed in float64 before the cast, so large total energies cancel exactly."""
        offset = columns.n_atoms * shift + columns.reference_energy(references)
        target = (columns.energy - offset) / (columns.n_atoms * scale)
        return cls(
            torch.as_tensor(target, dtype=dtype, device=device), torch.as_tensor(columns.n_atoms, device=device), offset
        )


@dataclass(frozen=True)
class NormalizationSettings:
    """``normalization.*``: what is trained (``cohesive`` or ``total`` energies), whether features and energies are
    standardised, a file of feature statistics, and a given per-atom shift or scale (eV/atom)."""

    energy_target: str = "cohesive"
    features: bool = True
    energy: bool = True
    feature_stats: str | None = None
    E_shift: float | None = None
    E_scaling: float | None = None

    @property
    def cohesive(self) -> bool:
        return self.energy_target == "cohesive"


def fit_normalization(
    potential,
    train_columns: Columns,
    atomic_energies: Mapping[str, float] | None,
    feature_statistics: Callable[[], tuple[np.ndarray, np.ndarray]],
    settings: NormalizationSettings,
) -> dict[str, float]:
    """Set ``potential``'s energy shift and scale (eV/atom) and feature mean and std from the training split.

    The feature statistics are read from ``settings.feature_stats`` when given, else computed by
    ``feature_statistics`` (a pass over the training set). Returns the fitted shift and scale as
    facts to log.
    """
    cohesive = settings.cohesive
    per_atom = train_columns.target_energy_per_atom(atomic_energies, cohesive)
    shift, scale = energy_normalization(per_atom, settings.E_shift, settings.E_scaling, settings.energy)
    potential.set_normalization(energy_shift=shift, energy_scale=scale, atomic_energies=atomic_energies if cohesive else None)
    if settings.features:
        n = potential.descriptor.n_features
        stats = settings.feature_stats
        mean, std = load_feature_stats(stats, n) if stats else feature_statistics()
        potential.set_normalization(feature_mean=torch.as_tensor(mean), feature_std=torch.as_tensor(std))
    return {"normalization.fitted_E_shift": shift, "normalization.fitted_E_scaling": scale}
