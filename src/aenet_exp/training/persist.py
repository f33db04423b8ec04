"""``caching.persist_dir``: neighbour, triplet and feature caches on disk, reused by later runs.

Each entry is an ``.npz`` of plain arrays (loaded with ``allow_pickle=False``) named by a hash
of the structure (species, positions, cell, pbc) and of everything else the entry depends on, so
a change to either makes a new entry. Entries are written atomically (:mod:`aenet_exp.files`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from aenet_exp.data import Structure
from aenet_exp.files import remove_stale_temporaries, write_atomically


def structure_digest(structure: Structure) -> str:
    """A hash of everything in a structure that its graph and features depend on."""
    h = hashlib.sha256()
    h.update("\0".join(structure.species).encode())
    h.update(np.ascontiguousarray(structure.positions, dtype=np.float64).tobytes())
    cell = structure.cell if structure.cell is not None else np.zeros((3, 3))
    h.update(np.ascontiguousarray(cell, dtype=np.float64).tobytes())
    h.update(np.asarray(structure.pbc, dtype=bool).tobytes())
    return h.hexdigest()


class DiskCache:
    """One kind of cache entry (``kind``: graphs, features) under ``directory``.

    ``depends_on`` describes every setting the entries depend on besides the structure (cutoffs,
    descriptor orders, dtype): entries made under other settings are never read.
    """

    def __init__(self, directory: str | Path, kind: str, depends_on: str):
        self.directory = Path(directory) / kind
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.directory)
        self.depends_on = depends_on

    def path(self, digest: str) -> Path:
        key = hashlib.sha256(f"{digest}|{self.depends_on}".encode()).hexdigest()[:40]
        return self.directory / f"{key}.npz"

    def load(self, digest: str) -> dict[str, np.ndarray] | None:
        """The arrays of an entry, or None when absent or unreadable (then it is rebuilt)."""
        path = self.path(digest)
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError, EOFError):
            return None

    def save(self, digest: str, arrays: dict[str, np.ndarray]) -> None:
        """Write an entry atomically."""

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as stream:
                np.savez(stream, **arrays)

        write_atomically(self.path(digest), write)
