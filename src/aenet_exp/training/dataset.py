"""``data.*``: the structures of a run, read, checked, filtered and split (seeded)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aenet_exp.data import DataError, Structure, read_structures
from aenet_exp.data.geometry import MIN_DISTANCE, overlap_message
from aenet_exp.data.hdf5 import StructureDatabase, build_database
from aenet_exp.data.taylor import TaylorExpansion
from aenet_exp.data.views import Chain, Subset
from aenet_exp.errors import ConfigError, warn
from aenet_exp.training.augment import read_rows, training_children
from aenet_exp.training.columns import Columns
from aenet_exp.training.normalization import FIT, fit_reference_energies, resolve_atomic_energies


@dataclass
class PreparedData:
    """The structures of a run and how they are split."""

    structures: Sequence[Structure]
    columns: Columns  # per-structure facts, rows as in structures
    train: np.ndarray  # (n_train,) indices into structures, Taylor children (augment=taylor) last
    test: np.ndarray  # (n_test,) indices into structures
    species: list[str]  # descriptor order
    atomic_energies: dict[str, float] | None  # eV, per species
    removed: dict[str, int] = field(default_factory=dict)  # filter name -> structures dropped
    reference_fit_rmse: float | None = None  # eV/atom, when the references were fitted (normalization.E_atomic=fit)
    children: int = 0  # Taylor children in training (augment=taylor), the last of structures and of train
    calibration: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # held out of training (committee)

    def facts(self) -> dict[str, object]:
        """Dataset facts logged with a run."""
        def count(indices):
            return int(len(indices)), int(self.columns.n_atoms[indices].sum())

        n_train, atoms_train = count(self.train)
        n_test, atoms_test = count(self.test)
        forces = int(self.columns.has_forces.sum())
        return {
            "dataset.digest": self.columns.digest(),
            "dataset.structures": len(self.structures),
            "dataset.atoms": atoms_train + atoms_test,
            "dataset.species": ",".join(self.species),
            "dataset.force_structures": forces,
            "dataset.train_structures": n_train,
            "dataset.train_children": self.children,
            "dataset.test_structures": n_test,
            "dataset.calibration_structures": int(len(self.calibration)),
            "dataset.train_atoms": atoms_train,
            "dataset.test_atoms": atoms_test,
            **{f"dataset.removed_{name}": n for name, n in self.removed.items()},
            **({f"normalization.fitted_E_atomic.{s}": e for s, e in self.atomic_energies.items()}
               if self.reference_fit_rmse is not None else {}),
        }


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".h5")


def data_label(path, database: str | None = None) -> str:
    """A short name for the data at ``path`` (``data.name`` when not given): the file's or folder's name
    without its suffix (``train.xyz`` -> ``train``, ``dft/*.xsf`` -> ``dft``), ``+N`` for N more sources."""
    paths = [path] if isinstance(path, str) else list(path)
    first = Path(str(database or paths[0]))
    name = first.name
    if "*" in name or "?" in name or not name:
        name = first.parent.name or "data"
    for suffix in ARCHIVE_SUFFIXES:
        name = name.removesuffix(suffix)
    name = Path(name).stem if "." in name else name
    return name + (f"+{len(paths) - 1}" if len(paths) > 1 and not database else "")


def load_structures(source) -> list[Structure]:
    """Read ``data.path`` (a path or a list of them); every structure must carry an energy."""
    structures = read_structures(source)
    for s in structures:
        if s.energy is None:
            raise DataError(s.source, f"frame {s.frame}: no energy; training needs a total energy per structure")
    return structures


def check_overlaps(structures: Sequence[Structure]) -> None:
    """DataError naming the file, frame and atoms of the first structure with overlapping atoms."""
    for s in structures:
        message = overlap_message(s)
        if message is not None:
            raise DataError(s.source, f"frame {s.frame}: {message}")


def species_order(present: Sequence[str], requested) -> list[str]:
    """``descriptor.species`` when given (it must cover the data), else the data's species sorted alphabetically."""
    present = sorted(present)
    if requested is None:
        return present
    missing = sorted(set(present) - set(requested))
    if missing:
        raise ConfigError("descriptor.species", f"the data contains species {missing} not in {list(requested)}")
    return list(requested)


def filter_structures(
    columns: Columns, per_atom: np.ndarray, max_energy: float | None, max_forces: float | None
) -> tuple[np.ndarray, dict[str, int]]:
    """Indices kept by ``max_energy`` (eV/atom, target space) and ``max_forces`` (largest |component|, eV/Å)."""
    keep = np.ones(len(columns), dtype=bool)
    removed = {}
    if max_energy is not None:
        high = per_atom > max_energy
        removed["max_energy"] = int(high.sum())
        keep &= ~high
    if max_forces is not None:
        strong = columns.max_abs_force > max_forces
        removed["max_forces"] = int((strong & keep).sum())
        keep &= ~strong
    return np.flatnonzero(keep), removed


def split(n: int, testpercent: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split into (train, test) indices; the test set has round(n · testpercent / 100)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * testpercent / 100.0))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def held_out(train: np.ndarray, percent: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``train`` split into (kept for training, held out): round(n · percent / 100) held out, seeded."""
    order = np.random.default_rng(seed).permutation(train)
    n_held = int(round(len(train) * percent / 100.0))
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def open_database(path, database: str, compression: str | None, compression_level: int | None,
                  in_memory_cache_size: int, show_progress: bool,
                  augmentation: TaylorExpansion | None = None) -> StructureDatabase:
    """``data.database``, built from ``data.path`` first when it does not exist (with the Taylor children of
    ``augmentation``)."""
    database = Path(database)
    if not database.exists():
        build_database(path, database, compression, compression_level, show_progress, augmentation)
    opened = StructureDatabase(database, cache_size=in_memory_cache_size)
    unlabelled = np.flatnonzero(np.isnan(opened.energies))
    if len(unlabelled):
        raise DataError(database, f"structure {unlabelled[0]} has no energy; training needs a total energy per structure")
    closest = opened.min_distance
    check_overlaps(opened if closest is None else [opened[int(i)] for i in np.flatnonzero(closest < MIN_DISTANCE)])
    return opened


def load_test_set(test_path) -> tuple[list[Structure], Columns] | None:
    """The external test structures of ``data.test_path`` and their columns (None without one)."""
    if test_path is None:
        return None
    structures = load_structures(test_path)
    check_overlaps(structures)
    return structures, Columns.of_structures(structures)


def prepare_data(
    path,
    testpercent: float = 10.0,
    max_energy: float | None = None,
    max_forces: float | None = None,
    test_path=None,
    database: str | None = None,
    in_memory_cache_size: int = 2048,
    compression: str | None = "gzip",
    compression_level: int | None = 4,
    *,
    references,
    fixed_references: Mapping[str, float] | None = None,
    energy_target: str,
    species: Sequence[str] | None,
    seed: int,
    show_progress: bool = False,
    augmentation: TaylorExpansion | None = None,
    calibration_percent: float = 0.0,
    calibration_seed: int = 0,
) -> PreparedData:
    """Read, check species and references, filter and split the structures of ``path`` (the ``data`` keys), then
    add the Taylor children of the training structures (``augmentation``, :mod:`aenet_exp.training.augment`).

    ``references`` are the reference energies in force (``normalization.E_atomic``, else
    ``data.E_atomic``), ``energy_target`` cohesive or total, ``species`` the descriptor's order
    (None: the data's, sorted). With ``test_path`` the filters apply to the training structures
    only, and the test set is that file, appended after them. ``calibration_percent`` of the training split
    (seeded with ``calibration_seed``) is held out of training, before any child is made, to calibrate a
    committee's uncertainty.
    """
    opened = None
    if database:
        opened = open_database(path, database, compression, compression_level, in_memory_cache_size, show_progress,
                               augmentation)
        structures, columns = read_part(opened)
    else:
        structures = load_structures(path)
        check_overlaps(structures)
        columns = Columns.of_structures(structures)
    external = load_test_set(test_path)
    present = set(columns.species) | set(external[1].species if external else ())
    order = species_order(present, species)
    fit_rmse = None
    if references == FIT and energy_target == "cohesive":
        atomic, fit_rmse = fit_on_training_split(columns, order, fixed_references or {}, max_forces, testpercent,
                                                 seed, external is not None)
    else:
        atomic = resolve_atomic_energies(references, energy_target, order)
    per_atom = columns.target_energy_per_atom(atomic, energy_target == "cohesive")
    kept, removed = filter_structures(columns, per_atom, max_energy, max_forces)
    if len(kept) == 0:
        raise DataError(str(path), f"no structure left after the filters ({removed})")
    read = structures
    structures = [structures[i] for i in kept] if isinstance(structures, list) else Subset(structures, kept)
    columns = columns.take(kept)
    if external is not None:
        test_structures, test_columns = external
        train = np.arange(len(structures))
        test = np.arange(len(structures), len(structures) + len(test_structures))
        structures = structures + test_structures if isinstance(structures, list) else Chain(structures, test_structures)
        columns = columns.concat(test_columns)
    else:
        train, test = split(len(structures), testpercent, seed)
    if len(train) == 0:
        raise DataError(str(path), f"no training structure left with data.testpercent={testpercent}")
    calibration = np.zeros(0, dtype=int)
    if calibration_percent:
        train, calibration = held_out(train, calibration_percent, calibration_seed)
        if len(calibration) == 0 or len(train) == 0:
            raise ConfigError("committee.calibration_percent", f"is {calibration_percent}, which leaves {len(train)} "
                              f"training and {len(calibration)} calibration structures; each needs at least one")
    warn_about_energies(structures, columns, atomic, energy_target)
    data = PreparedData(structures, columns, train, test, order, atomic, removed, fit_rmse, calibration=calibration)
    children = training_children(read, kept[train], augmentation, opened)
    return data if children is None else with_children(data, *children)


def read_part(database: StructureDatabase) -> tuple[Sequence[Structure], Columns]:
    """The structures of ``database`` read from files (without its Taylor children) and their columns."""
    rows = read_rows(database)
    columns = Columns.of_database(database)
    if len(rows) == len(database):
        return database, columns
    return Subset(database, rows), columns.take(rows)


def with_children(data: PreparedData, children: Sequence[Structure], columns: Columns) -> PreparedData:
    """``data`` with ``children`` appended to its structures and to its training indices (not to the test set)."""
    n = len(data.structures)
    structures = data.structures + children if isinstance(data.structures, list) and isinstance(children, list) \
        else Chain(data.structures, children)
    return dataclasses.replace(
        data, structures=structures, columns=data.columns.concat(columns),
        train=np.concatenate([data.train, n + np.arange(len(children))]), children=len(children),
    )


def fit_on_training_split(
    columns: Columns, species: Sequence[str], fixed: Mapping[str, float], max_forces: float | None,
    testpercent: float, seed: int, all_for_training: bool,
) -> tuple[dict[str, float], float]:
    """``normalization.E_atomic=fit``: references fitted to the structures the split puts in training (after
    ``data.max_forces``; ``data.max_energy`` filters in the fitted space afterwards)."""
    kept, _ = filter_structures(columns, np.zeros(len(columns)), None, max_forces)
    train = np.arange(len(kept)) if all_for_training else split(len(kept), testpercent, seed)[0]
    return fit_reference_energies(columns.take(kept[train]), species, fixed)


# Energies per atom are compared with the median by a robust z-score, |x − median| / (1.4826·MAD).
OUTLIER_Z = 50.0
COHESIVE_PLAUSIBLE = 50.0  # eV/atom: cohesive energies beyond ± this are no chemistry: wrong units or references
SHOWN = 3  # outliers named in a warning


def warn_about_energies(structures: Sequence[Structure], columns: Columns, atomic, energy_target: str) -> None:
    """Warn (naming them) about energies far outside what DFT gives: cohesive energies beyond
    :data:`COHESIVE_PLAUSIBLE`, or energies per atom whose robust z-score exceeds :data:`OUTLIER_Z`."""
    cohesive = energy_target == "cohesive"
    per_atom = columns.target_energy_per_atom(atomic, cohesive)
    space = "cohesive" if cohesive else "total"
    if cohesive and np.abs(per_atom).max() > COHESIVE_PLAUSIBLE:
        wild = np.flatnonzero(np.abs(per_atom) > COHESIVE_PLAUSIBLE)
        warn(f"data: {len(wild)} structures have cohesive energies beyond ±{COHESIVE_PLAUSIBLE:g} eV/atom "
             f"({named(structures, per_atom, wild)}): are the energies in eV, and the reference energies right?")
    median = np.median(per_atom)
    spread = 1.4826 * np.median(np.abs(per_atom - median))
    if spread == 0:
        return
    z = np.abs(per_atom - median) / spread
    outliers = np.argsort(-z)[: int((z > OUTLIER_Z).sum())]
    if len(outliers):
        warn(f"data: {len(outliers)} structures have {space} energies per atom far from the others (robust z > "
             f"{OUTLIER_Z:g}; median {median:.4g} eV/atom): {named(structures, per_atom, outliers)}; if they are "
             "errors, drop them with data.max_energy=<eV/atom>")


def named(structures: Sequence[Structure], per_atom: np.ndarray, indices: np.ndarray) -> str:
    """``source frame k: E eV/atom`` of the first :data:`SHOWN` of ``indices``, and how many more."""
    shown = [f"{structures[int(i)].source} frame {structures[int(i)].frame}: {per_atom[i]:.4g} eV/atom"
             for i in indices[:SHOWN]]
    more = f" and {len(indices) - SHOWN} more" if len(indices) > SHOWN else ""
    return "; ".join(shown) + more
