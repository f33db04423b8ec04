"""An HDF5 structure database for data sets that do not fit in memory.

:func:`build_database` streams structure files into one HDF5 file (:func:`write_database`
any iterable of structures);
:class:`StructureDatabase` reads it back one structure at a time. The file holds
plain arrays only (no pickles, no object dtypes other than UTF-8 strings).

Layout (all datasets at the root; ``n`` structures, ``N`` atoms in all)::

    species        (n_species,)  S3    chemical symbols, in order of first appearance
    sources        (n_sources,)  str   files the structures came from (variable-length UTF-8)

    positions      (N, 3)        f8    Cartesian coordinates, Å
    forces         (N, 3)        f8    forces, eV/Å; NaN rows for structures without forces
    species_index  (N,)          i1    row of ``species`` (i1 holds all 119 symbols)

    atom_offset    (n,)          i8    first row of structure i in the per-atom datasets
    n_atoms        (n,)          i4    its atom count
    energy         (n,)          f8    total energy, eV; NaN when unlabelled
    has_forces     (n,)          bool
    max_abs_force  (n,)          f8    largest |force component|, eV/Å; NaN without forces
    cell           (n, 3, 3)     f8    lattice vectors as rows, Å; zeros without a cell
    has_cell       (n,)          bool
    pbc            (n, 3)        bool
    source_index   (n,)          i4    row of ``sources``
    frame          (n,)          i4    frame within its source file
    min_distance   (n,)          f8    closest pair of atoms, Å (inf: none within 1 Å); version 2 on

A database built with Taylor children (``augment=taylor``, :mod:`aenet_exp.data.taylor`) is version 3:
each structure read is followed by its children (energy, no forces), and three more per-structure
datasets record where each comes from::

    parent           (n,)        i8    row of the structure's parent in this database; -1 for a structure read
    child_index      (n,)        i4    which of its parent's children, 0 … children − 1; -1 for a structure read
    displacement_rms (n,)        f8    RMS of the child's displacement over its 3·n_atoms components, Å; NaN
                                       for a structure read

with the root attributes ``augment`` (``"taylor"``), ``augment_children``, ``augment_displacement`` (Å, RMS
per Cartesian component) and ``augment_seed``. Training splits the structures read and drops the
children of test structures (:mod:`aenet_exp.training.augment`); readers of versions 1–2 refuse it.

Every dataset is chunked and resizable along its first axis. Root attributes:
``format`` (``"aenet_exp-structures"``), ``format_version`` (2; version 1 lacks ``min_distance``; 3 adds the
children), ``length_unit`` (Å), ``energy_unit`` (eV), ``force_unit`` (eV/Å) and ``created_by``.
"""

from __future__ import annotations

import operator
import os
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from aenet_exp import __version__
from aenet_exp.data.errors import DataError
from aenet_exp.data.geometry import closest_pair
from aenet_exp.data.readers import Source, _resolve, read_structures
from aenet_exp.data.structure import Structure
from aenet_exp.data.taylor import Child, TaylorExpansion, check_parents
from aenet_exp.errors import SettingError
from aenet_exp.files import atomic_path, remove_stale_temporaries

FORMAT = "aenet_exp-structures"
FORMAT_VERSION = 2
AUGMENTED_VERSION = 3  # a database with Taylor children and their provenance
READABLE_VERSIONS = (1, 2, 3)
ADDED_IN = {"min_distance": 2, "parent": 3, "child_index": 3, "displacement_rms": 3}  # datasets newer than version 1
COMPRESSIONS = ("gzip", "lzf", None)

# name -> (dtype, shape after the first axis)
_TABLES = {"species": ("S3", ()), "sources": (h5py.string_dtype(), ())}
_PER_ATOM = {"positions": ("f8", (3,)), "forces": ("f8", (3,)), "species_index": ("i1", ())}
_PER_STRUCTURE = {
    "atom_offset": ("i8", ()),
    "n_atoms": ("i4", ()),
    "energy": ("f8", ()),
    "has_forces": ("?", ()),
    "max_abs_force": ("f8", ()),
    "cell": ("f8", (3, 3)),
    "has_cell": ("?", ()),
    "pbc": ("?", (3,)),
    "source_index": ("i4", ()),
    "frame": ("i4", ()),
    "min_distance": ("f8", ()),
}
_PROVENANCE = {"parent": ("i8", ()), "child_index": ("i4", ()), "displacement_rms": ("f8", ())}
_CHUNK_ROWS = {"table": 256, "atom": 1024, "structure": 1024}
_BLOCK_ATOMS = 1 << 16
_BLOCK_STRUCTURES = 1 << 12
_EXPECTED = "expected an aenet_exp structure database"


# ---------------------------------------------------------------- writing


def build_database(
    source: Source,
    path: str | Path,
    compression: str | None = "gzip",
    compression_level: int | None = 4,
    show_progress: bool = False,
    augmentation: TaylorExpansion | None = None,
) -> int:
    """Read every structure in ``source`` into an HDF5 database at ``path``.

    Files are read one at a time and appended in blocks, so memory holds at most
    one block (about 65k atoms or 4096 structures, or one larger file) plus the
    species and source tables, whatever the number of files. The database is written to a
    temporary file beside ``path`` and moved into place at the end: on any error
    the temporary file is removed and ``path`` is left as it was.

    Args:
        source: as for :func:`read_structures` (file, directory, glob, archive or a list).
        path: the database file to create or replace.
        compression: ``"gzip"``, ``"lzf"`` or ``None``.
        compression_level: gzip level 0-9 (``None``: h5py's default); unused by other filters.
        show_progress: a progress bar over files, when stderr is a terminal.
        augmentation: each structure with forces followed by its Taylor children (see :func:`write_database`).

    Returns:
        The number of structures written (children included).

    Raises:
        ValueError: an invalid ``compression`` or ``compression_level``.
        DataError: a source matches no file, or a file is malformed.
    """
    return write_database(_read_files(source, show_progress), path, compression, compression_level, augmentation)


def write_database(
    structures: Iterable[Structure],
    path: str | Path,
    compression: str | None = "gzip",
    compression_level: int | None = 4,
    augmentation: TaylorExpansion | None = None,
) -> int:
    """Write ``structures`` into an HDF5 database at ``path``, as they come.

    ``structures`` is iterated once (a generator works), its structures appended in
    blocks, so memory holds at most one block besides what the iterable holds. The
    database is written to a temporary file beside ``path`` and moved into place at
    the end: on any error, the iterable's included, the temporary file is removed and
    ``path`` is left as it was.

    Args:
        structures: the structures, in database order.
        path: the database file to create or replace.
        compression: ``"gzip"``, ``"lzf"`` or ``None``.
        compression_level: gzip level 0-9 (``None``: h5py's default); unused by other filters.
        augmentation: with it, each structure is followed by its Taylor children (a version-3 database with
            their provenance); a warning names how many structures have no forces (and so no children).

    Returns:
        The number of structures written (children included).

    Raises:
        ValueError: an invalid ``compression`` or ``compression_level`` (before ``structures`` is touched).
        ConfigError: ``augment``: with ``augmentation``, no structure has forces (nothing is written).
    """
    filters = _filters(compression, compression_level)
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a directory; expected the path of the database file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        with atomic_path(path) as temporary:
            return _write(structures, temporary, filters, augmentation)
    except OSError as error:
        raise DataError(path, f"cannot write the database: {error.strerror or error}") from None


def _read_files(source: Source, show_progress: bool) -> Iterator[Structure]:
    """The structures of ``source``, read one file at a time when iterated."""
    for file in _progress(_resolve(source), show_progress):
        yield from read_structures(file)


def check_compression(compression: str | None, level: int | None) -> None:
    """SettingError (a ValueError) naming ``compression`` or ``compression_level`` when out of range."""
    if compression not in COMPRESSIONS:
        raise SettingError("compression", f"must be 'gzip', 'lzf' or None, got {compression!r}")
    if level is not None and (isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9):
        raise SettingError("compression_level", f"must be an integer from 0 to 9 or None, got {level!r}")


def _filters(compression: str | None, level: int | None) -> dict:
    """h5py dataset filter options (checked by :func:`check_compression`)."""
    check_compression(compression, level)
    if compression is None:
        return {}
    return {"compression": compression, "compression_opts": level if compression == "gzip" else None, "shuffle": True}


def _write(structures: Iterable[Structure], path: Path, filters: dict, augmentation: TaylorExpansion | None) -> int:
    """Write ``structures`` (each followed by its children with ``augmentation``) to a new HDF5 file at ``path``;
    returns the count written."""
    with h5py.File(path, "x") as h5:
        h5.attrs.update(
            format=FORMAT,
            format_version=FORMAT_VERSION if augmentation is None else AUGMENTED_VERSION,
            length_unit="Å",
            energy_unit="eV",
            force_unit="eV/Å",
            created_by=f"aenet_exp {__version__}",
            **(augmentation.attributes() if augmentation is not None else {}),
        )
        writer = _Writer(h5, filters, provenance=augmentation is not None)
        for item in structures if augmentation is None else augmentation.interleaved(structures):
            writer.append(item)
        writer.flush()
        if augmentation is not None:
            check_parents(len(writer.original_rows), writer.count - len(writer.original_rows), augmentation.children,
                          "structures")
        return writer.count


def _progress(files: list[Path], enabled: bool) -> Iterable[Path]:
    """``files``, behind a tqdm bar when enabled and stderr is a terminal."""
    return tqdm(files, desc="database", unit="file") if enabled and sys.stderr.isatty() else files


class _Writer:
    """Appends structures to the resizable datasets of a new database file.

    Structures are held until a block of ``_BLOCK_ATOMS`` atoms or
    ``_BLOCK_STRUCTURES`` structures is pending, then written with one resize
    and one write per dataset.
    """

    def __init__(self, h5: h5py.File, filters: dict, provenance: bool = False):
        per_structure = {**_PER_STRUCTURE, **(_PROVENANCE if provenance else {})}
        self._datasets = {
            name: h5.create_dataset(
                name,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=(_CHUNK_ROWS[kind], *shape),
                **filters,
            )
            for kind, layout in (("table", _TABLES), ("atom", _PER_ATOM), ("structure", per_structure))
            for name, (dtype, shape) in layout.items()
        }
        self._species: dict[str, int] = {}
        self._sources: dict[str, int] = {}
        self._pending: list[Structure] = []
        self._pending_origins: list[tuple[int, int, float]] = []  # (parent row, child index, displacement RMS)
        self._provenance = provenance
        self._pending_atoms = 0
        self._n_atoms = 0
        self.count = 0
        self.original_rows: list[int] = []  # row of each structure read (not a child), in reading order

    def append(self, item: Structure | Child) -> None:
        """Queue one structure or child, writing a block when enough are pending."""
        row = self.count + len(self._pending)
        if isinstance(item, Child):
            self._pending_origins.append((self.original_rows[item.parent], item.index, item.displacement_rms))
            structure = item.structure
        else:
            self.original_rows.append(row)
            self._pending_origins.append((-1, -1, np.nan))
            structure = item
        self._pending.append(structure)
        self._pending_atoms += structure.n_atoms
        if self._pending_atoms >= _BLOCK_ATOMS or len(self._pending) >= _BLOCK_STRUCTURES:
            self.flush()

    def flush(self) -> None:
        """Write the pending structures."""
        if not self._pending:
            return
        structures, self._pending, self._pending_atoms = self._pending, [], 0
        origins, self._pending_origins = self._pending_origins, []
        new_species, new_sources = len(self._species), len(self._sources)
        rows = self._rows(structures)
        if self._provenance:
            rows.update(zip(_PROVENANCE, map(list, zip(*origins))))
        rows["species"] = np.array([sym.encode("ascii") for sym in list(self._species)[new_species:]], dtype="S3")
        rows["sources"] = list(self._sources)[new_sources:]
        for name, values in rows.items():
            _extend(self._datasets[name], values)
        self._n_atoms += int(rows["n_atoms"].sum())
        self.count += len(structures)

    def _rows(self, structures: list[Structure]) -> dict[str, np.ndarray]:
        """The per-atom and per-structure rows of ``structures``, adding new species and sources to the tables."""
        counts = np.array([s.n_atoms for s in structures])
        forces = [s.forces if s.forces is not None else np.full((s.n_atoms, 3), np.nan) for s in structures]
        return {
            "positions": np.concatenate([s.positions for s in structures]),
            "forces": np.concatenate(forces),
            "species_index": [self._row(self._species, sym) for s in structures for sym in s.species],
            "atom_offset": self._n_atoms + np.cumsum(counts) - counts,
            "n_atoms": counts,
            "energy": [np.nan if s.energy is None else s.energy for s in structures],
            "has_forces": [s.forces is not None for s in structures],
            "max_abs_force": [np.abs(f).max() for f in forces],
            "cell": [np.zeros((3, 3)) if s.cell is None else s.cell for s in structures],
            "has_cell": [s.cell is not None for s in structures],
            "pbc": [s.pbc for s in structures],
            "source_index": [self._row(self._sources, s.source) for s in structures],
            "frame": [s.frame for s in structures],
            "min_distance": [closest_distance(s) for s in structures],
        }

    @staticmethod
    def _row(table: dict[str, int], key: str) -> int:
        """The row of ``key`` in a species or sources table, appending it when new."""
        return table.setdefault(key, len(table))


def closest_distance(structure: Structure) -> float:
    """The distance of the closest pair of atoms (Å), inf when none is within the overlap search."""
    closest = closest_pair(structure)
    return np.inf if closest is None else closest[2]


def _extend(dataset: h5py.Dataset, rows) -> None:
    """Append ``rows`` along the first axis of ``dataset``."""
    values = np.asarray(rows, dtype=dataset.dtype)
    if len(values):
        start = dataset.shape[0]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = values


# ---------------------------------------------------------------- reading


class StructureDatabase(Sequence[Structure]):
    """A read-only sequence of the structures in a database made by :func:`build_database`.

    The file is checked on construction; the handle used for reading is opened
    on first access in each process (again after a fork) and dropped when
    pickled, so the database can be handed to DataLoader workers. Each process
    keeps its ``cache_size`` most recently read structures; cached structures are
    shared, so do not modify their arrays in place.
    """

    def __init__(self, path: str | Path, cache_size: int = 2048):
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.path = Path(path)
        self.cache_size = cache_size
        with _open(self.path) as h5:
            self._len = h5["n_atoms"].shape[0]
            self._species = tuple(symbol.decode("ascii") for symbol in h5["species"][()])
            self.augmentation = TaylorExpansion.of_attributes(h5.attrs)  # the children's settings; None without
        self._h5: h5py.File | None = None
        self._ds: dict[str, h5py.Dataset] = {}
        self._pid: int | None = None
        self._cache: OrderedDict[int, Structure] = OrderedDict()

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int | slice) -> Structure | list[Structure]:
        """The structure at ``index`` (negative counts from the end); a list for a slice."""
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = self._position(index)
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        structure = self._read(i)
        if self.cache_size:
            self._cache[i] = structure
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return structure

    @property
    def energies(self) -> np.ndarray:
        """``(n,)`` total energies in eV, NaN where unlabelled."""
        return self._column("energy")

    @property
    def n_atoms(self) -> np.ndarray:
        """``(n,)`` atom counts."""
        return self._column("n_atoms")

    @property
    def has_forces(self) -> np.ndarray:
        """``(n,)`` bool, whether each structure has forces."""
        return self._column("has_forces")

    @property
    def max_abs_force(self) -> np.ndarray:
        """``(n,)`` largest |force component| in eV/Å, NaN without forces."""
        return self._column("max_abs_force")

    @property
    def min_distance(self) -> np.ndarray | None:
        """``(n,)`` distance of each structure's closest pair of atoms, Å (inf: none within 1 Å); None for a
        version-1 database, which did not record it."""
        return self._column("min_distance") if "min_distance" in self._datasets() else None

    @property
    def parents(self) -> np.ndarray:
        """``(n,)`` row of each structure's parent (a Taylor child's); -1 for structures read from files."""
        return self._column("parent") if "parent" in self._datasets() else np.full(self._len, -1, dtype=np.int64)

    @property
    def frames(self) -> np.ndarray:
        """``(n,)`` frame of each structure within its source file."""
        return self._column("frame")

    @property
    def species(self) -> list[str]:
        """Every chemical symbol in the database, in order of first appearance."""
        return list(self._species)

    def composition(self) -> np.ndarray:
        """``(n, len(species))`` atoms of each species (in :attr:`species` order) per structure."""
        ds = self._datasets()
        owner = np.repeat(np.arange(self._len), ds["n_atoms"][()])
        index = ds["species_index"][()].astype(np.int64)
        self._check_species_index(index, owner)
        counts = np.zeros((self._len, len(self._species)), dtype=np.int64)
        np.add.at(counts, (owner, index), 1)
        return counts

    @property
    def sources(self) -> list[str]:
        """The file each structure came from, one per structure."""
        ds = self._datasets()
        return ds["sources"].asstr()[()][ds["source_index"][()]].tolist()

    def close(self) -> None:
        """Close this process's handle; the next access reopens it."""
        if self._h5 is not None:
            self._h5.close()
        self._h5, self._ds = None, {}

    def __enter__(self) -> StructureDatabase:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getstate__(self) -> dict:
        """Pickle without the handle and cache; the unpickled copy opens its own."""
        return {**self.__dict__, "_h5": None, "_ds": {}, "_pid": None, "_cache": OrderedDict()}

    def __repr__(self) -> str:
        return f"StructureDatabase({str(self.path)!r}, {len(self)} structures)"

    def _position(self, index) -> int:
        i = operator.index(index)
        if not -self._len <= i < self._len:
            raise IndexError(f"structure index {index} out of range for {self._len} structures")
        return i % self._len

    def _check_species_index(self, index: np.ndarray, owner: np.ndarray) -> None:
        """DataError naming the first structure (of ``owner``, one per atom) with a species index outside the
        database's species."""
        outside = np.flatnonzero((index < 0) | (index >= len(self._species)))
        if len(outside):
            ds, i = self._datasets(), int(owner[outside[0]])
            source, frame = ds["sources"].asstr()[ds["source_index"][i]], int(ds["frame"][i])
            raise DataError(self.path, f"structure {i} ({source} frame {frame}): species index "
                            f"{int(index[outside[0]])} is outside the database's {len(self._species)} species")

    def _datasets(self) -> dict[str, h5py.Dataset]:
        """This process's datasets by name, opening the file on first use and again after a fork."""
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = _open(self.path)
            self._pid = os.getpid()
            self._ds = {name: self._h5[name] for name in self._h5}
        return self._ds

    def _column(self, name: str) -> np.ndarray:
        return self._datasets()[name][()]

    def _read(self, i: int) -> Structure:
        """Structure ``i``, from its rows of the per-structure and per-atom datasets."""
        ds = self._datasets()
        start = int(ds["atom_offset"][i])
        atoms = slice(start, start + int(ds["n_atoms"][i]))
        energy = float(ds["energy"][i])
        source, frame = ds["sources"].asstr()[ds["source_index"][i]], int(ds["frame"][i])
        rows = ds["species_index"][atoms]
        self._check_species_index(rows, np.broadcast_to(i, rows.shape))
        return Structure(
            species=[self._species[k] for k in rows],
            positions=ds["positions"][atoms],
            cell=ds["cell"][i] if ds["has_cell"][i] else None,
            pbc=ds["pbc"][i],
            energy=None if np.isnan(energy) else energy,
            forces=ds["forces"][atoms] if ds["has_forces"][i] else None,
            source=source,
            frame=frame,
        )


def _open(path: Path) -> h5py.File:
    """Open a database read-only and check its layout; DataError if it is not one.

    File locking is off: a database is only ever written to a temporary file
    that is then moved into place, so a reader never sees one being written.
    """
    if not path.is_file():
        raise DataError(path, f"no such file, {_EXPECTED}")
    try:
        h5 = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise DataError(path, f"not an HDF5 file ({exc}), {_EXPECTED}") from None
    try:
        _check_layout(h5, path)
    except BaseException:
        h5.close()
        raise
    return h5


def _check_layout(h5: h5py.File, path: Path) -> None:
    """DataError unless ``h5`` has this module's format attribute, datasets, dtypes and shapes."""
    if h5.attrs.get("format") != FORMAT:
        raise DataError(path, f"format attribute is {h5.attrs.get('format')!r}, {_EXPECTED}")
    version = h5.attrs.get("format_version")
    if version not in READABLE_VERSIONS:
        raise DataError(path, f"unsupported format_version {version!r} (reads {list(READABLE_VERSIONS)}), {_EXPECTED}")
    _refuse_objects(h5, path)
    layout = {name: kind for name, kind in {**_TABLES, **_PER_ATOM, **_PER_STRUCTURE}.items()
              if ADDED_IN.get(name, 1) <= version}
    missing = [name for name in layout if not isinstance(h5.get(name), h5py.Dataset)]
    if missing:
        raise DataError(path, f"missing datasets {', '.join(missing)}, {_EXPECTED}")
    for name, (dtype, shape) in layout.items():
        found = h5[name]
        if found.dtype.kind != np.dtype(dtype).kind or found.shape[1:] != shape:
            wanted = f"{np.dtype(dtype).kind}-kind {shape}"
            raise DataError(path, f"dataset {name} is {found.dtype} {found.shape[1:]}, not {wanted}, {_EXPECTED}")
    for group in (_PER_ATOM, _PER_STRUCTURE):
        if len({h5[name].shape[0] for name in group if name in layout}) != 1:
            raise DataError(path, f"datasets {', '.join(group)} differ in length, {_EXPECTED}")


def _refuse_objects(h5: h5py.File, path: Path) -> None:
    """DataError for any dataset whose dtype is an object or opaque type other than a string."""

    def check(name: str, item) -> None:
        if isinstance(item, h5py.Dataset) and item.dtype.kind in "OV" and h5py.check_string_dtype(item.dtype) is None:
            raise DataError(path, f"dataset {name} has dtype {item.dtype}, refusing non-array data; {_EXPECTED}")

    h5.visititems(check)
