"""``augment.*``: Taylor children (:mod:`aenet_exp.data.taylor`) of the training split, added to training only.

Split first, augment after: the structures of ``data.path`` are filtered and split as without
augmentation; only the training structures with forces are parents. Their children are appended
after every other structure and their indices after the training indices, parent by parent (in
reading order), each parent's children in order. They are never in the test set, and they have no
forces, so force supervision (``Columns.has_forces``) never selects them.

The children come from one of two places, which give the same structures bit for bit:

- made here, in memory, from the parents (files, or a database built without children);
- read from a database built with them (``build-db ... augment=taylor``): it holds the children of
  every structure with forces, recorded with their parent's row; those of parents outside the
  training split (test, filtered out) are not used. Its children must have been made with the
  run's ``augment`` settings (ConfigError naming the key that differs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aenet_exp.data import Structure, StructureDatabase
from aenet_exp.data.taylor import TaylorExpansion, check_parents
from aenet_exp.data.views import Subset
from aenet_exp.errors import ConfigError, warn
from aenet_exp.training.columns import Columns
from aenet_exp.training.memory import check_memory, children_need


def read_rows(database: StructureDatabase) -> np.ndarray:
    """``(n_read,)`` rows of the structures read from files (not children), in reading order."""
    return np.flatnonzero(database.parents < 0)


def training_children(
    read: Sequence[Structure], parents: np.ndarray, expansion: TaylorExpansion | None,
    database: StructureDatabase | None,
) -> tuple[Sequence[Structure], Columns] | None:
    """The children of the training structures ``parents`` and their columns; None without augmentation.

    Args:
        read: the data's structures as read, before filters (for a database: without its children).
        parents: ``(n_train,)`` positions in ``read`` of the training structures, ascending.
        expansion: ``augment=taylor``'s settings, None for ``augment=none``.
        database: the database ``read`` comes from, if any (its stored children are used when it has them).
    """
    stored = database.augmentation if database is not None else None
    if expansion is None:
        if stored is not None:
            warn(f"data.database: {database.path} holds Taylor children; augment=none trains without them")
        return None
    if stored is not None:
        check_same_expansion(expansion, stored, database.path)
        children, columns = stored_children(database, parents)
    else:
        check_memory([children_need(read, parents, expansion.children)])
        children = [child.structure for key in parents for child in expansion.children_of(read[int(key)], int(key))]
        columns = Columns.of_structures(children)
    check_parents(len(parents), len(children), expansion.children, "training structures")
    return children, columns


def check_same_expansion(expansion: TaylorExpansion, stored: TaylorExpansion, database) -> None:
    """ConfigError naming the first ``augment`` key whose value differs from the one ``database``'s children were
    made with."""
    for key in ("children", "displacement", "seed"):
        wanted, made = getattr(expansion, key), getattr(stored, key)
        if wanted != made:
            raise ConfigError(
                f"augment.{key}", f"is {wanted}, but the Taylor children of {database} were made with {made}; "
                f"set augment.{key}={made}, or rebuild the database (build-db ... augment.{key}={wanted})",
            )


def stored_children(database: StructureDatabase, parents: np.ndarray) -> tuple[Sequence[Structure], Columns]:
    """The children in ``database`` of the structures read at positions ``parents``, in database order (parent by
    parent, each one's children in order), and their columns."""
    parent_row, read = database.parents, read_rows(database)
    position_of_row = np.full(len(parent_row), -1)
    position_of_row[read] = np.arange(len(read))
    child_rows = np.flatnonzero(parent_row >= 0)
    rows = child_rows[np.isin(position_of_row[parent_row[child_rows]], parents)]
    return Subset(database, rows), Columns.of_database(database).take(rows)
