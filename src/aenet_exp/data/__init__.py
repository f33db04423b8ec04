"""Structure data: the :class:`Structure` record and readers for XSF and ASE formats."""

from __future__ import annotations

from aenet_exp.data.errors import DataError
from aenet_exp.data.readers import read_structures, read_xsf
from aenet_exp.data.structure import Structure

__all__ = ["DataError", "Structure", "read_structures", "read_xsf"]

from aenet_exp.data.hdf5 import StructureDatabase, build_database  # noqa: E402

__all__ += ["StructureDatabase", "build_database"]
