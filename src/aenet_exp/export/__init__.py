"""Export of trained potentials to other codes' formats: ænet's network files (and reading them back)."""

from aenet_exp.export.aenet_ascii import SUFFIX, read_aenet_ascii, write_aenet_ascii

__all__ = ["SUFFIX", "read_aenet_ascii", "write_aenet_ascii"]
