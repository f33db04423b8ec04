"""The small data files in tests/fixtures (no network, no data outside the repository) and the repository root."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "fixtures"
SMALL = DATA / "tio2-small"
E_ATOMIC = {"O": -432.503149303, "Ti": -1604.604515075}  # eV, the TiO2 set's references
