"""The descriptor's settings checks, used by its constructor and by config validation (no torch needed)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

from aenet_exp.errors import SettingError


def check_descriptor_settings(
    species: Sequence[str] | None,
    rad_order: int,
    rad_cutoff: float,
    ang_order: int,
    ang_cutoff: float,
    min_cutoff: float = 0.0,
) -> None:
    """SettingError naming the first setting out of range (orders >= 1, cutoffs > 0 Å, min_cutoff below both).

    ``species`` may be None (taken from the data later); given, it must be distinct symbols.
    """
    if species is not None and (len(species) == 0 or len(set(species)) != len(species)):
        raise SettingError("species", f"must be distinct chemical symbols, got {list(species)}")
    for name, order in (("rad_order", rad_order), ("ang_order", ang_order)):
        if isinstance(order, bool) or not isinstance(order, Integral) or order < 1:
            raise SettingError(name, f"must be an integer >= 1, got {order!r}")
    for name, cutoff in (("rad_cutoff", rad_cutoff), ("ang_cutoff", ang_cutoff)):
        if not float(cutoff) > 0:
            raise SettingError(name, f"must be > 0 Å, got {cutoff}")
    if not 0 <= float(min_cutoff) < min(rad_cutoff, ang_cutoff):
        raise SettingError("min_cutoff", f"must be in [0, min(rad_cutoff, ang_cutoff)) Å, got {min_cutoff}")
