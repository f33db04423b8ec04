"""Files a run writes: predicted energies and forces (``tracking.save_energies`` / ``save_forces``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aenet_exp.data import Structure
from aenet_exp.files import write_atomically
from aenet_exp.training.events import Predictions

ENERGY_COLUMNS = "source frame n_atoms E_ref_eV E_pred_eV E_ref_eV_per_atom E_pred_eV_per_atom"
FORCE_COLUMNS = "source frame atom species Fx_ref Fy_ref Fz_ref Fx_pred Fy_pred Fz_pred  (eV/Å)"


def energy_table(structures: Sequence[Structure], predictions: Predictions) -> str:
    """One row per structure: source, frame, atoms, reference and predicted energy, total and per atom."""
    rows = [f"# {ENERGY_COLUMNS}"]
    for i, ref, pred, n in zip(predictions.indices, predictions.energy_ref, predictions.energy_pred, predictions.n_atoms):
        s = structures[i]
        rows.append(f"{s.source} {s.frame} {n} {ref:.10f} {pred:.10f} {ref / n:.10f} {pred / n:.10f}")
    return "\n".join(rows) + "\n"


def force_table(structures: Sequence[Structure], predictions: Predictions) -> str:
    """One row per atom of each structure with forces: reference and predicted force vectors."""
    rows = [f"# {FORCE_COLUMNS}"]
    for i, ref, pred in zip(predictions.indices, predictions.force_ref, predictions.force_pred):
        if ref is None or pred is None:
            continue
        s = structures[i]
        for atom, (r, p) in enumerate(zip(ref, pred)):
            values = " ".join(f"{v:.8f}" for v in (*r, *p))
            rows.append(f"{s.source} {s.frame} {atom} {s.species[atom]} {values}")
    return "\n".join(rows) + "\n"


def write_predictions(
    directory: Path, structures: Sequence[Structure], predictions: dict[str, Predictions], energies: bool, forces: bool
) -> list[Path]:
    """``energies.<set>.predicted`` and ``forces.<set>.predicted`` for each set, as asked."""
    written = []
    for name, pred in predictions.items():
        if energies:
            written.append(directory / f"energies.{name}.predicted")
            write_atomically(written[-1], energy_table(structures, pred))
        if forces:
            written.append(directory / f"forces.{name}.predicted")
            write_atomically(written[-1], force_table(structures, pred))
    return written
