"""Files a run writes: predicted energies and forces (``tracking.save_energies`` / ``save_forces``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aenet_exp.data import Structure
from aenet_exp.files import write_atomically
from aenet_exp.evaluation.predictions import Predictions

ENERGY_COLUMNS = "source frame n_atoms E_ref_eV E_pred_eV E_ref_eV_per_atom E_pred_eV_per_atom"
FORCE_COLUMNS = "source frame atom species Fx_ref Fy_ref Fz_ref Fx_pred Fy_pred Fz_pred"
# A committee's (calibrated) standard deviations follow its mean predictions.
ENERGY_STD_COLUMNS = " E_std_eV E_std_eV_per_atom"
FORCE_STD_COLUMNS = " Fx_std Fy_std Fz_std"
FORCE_UNIT = "  (eV/Å)"


def energy_table(structures: Sequence[Structure], predictions: Predictions) -> str:
    """One row per structure: source, frame, atoms, reference and predicted energy, total and per atom (and a
    committee's standard deviation, total and per atom)."""
    committee = predictions.energy_std is not None
    rows = [f"# {ENERGY_COLUMNS}" + (ENERGY_STD_COLUMNS if committee else "")]
    spread = predictions.energy_std if committee else [None] * len(predictions.indices)
    for i, ref, pred, n, std in zip(predictions.indices, predictions.energy_ref, predictions.energy_pred,
                                    predictions.n_atoms, spread):
        s = structures[i]
        row = f"{s.source} {s.frame} {n} {ref:.10f} {pred:.10f} {ref / n:.10f} {pred / n:.10f}"
        rows.append(row + (f" {std:.10f} {std / n:.10f}" if committee else ""))
    return "\n".join(rows) + "\n"


def force_table(structures: Sequence[Structure], predictions: Predictions) -> str:
    """One row per atom of each structure with forces: reference and predicted force vectors (and a committee's
    standard deviations)."""
    committee = predictions.energy_std is not None
    rows = [f"# {FORCE_COLUMNS}" + (FORCE_STD_COLUMNS if committee else "") + FORCE_UNIT]
    spread = predictions.force_std if committee else [None] * len(predictions.indices)
    for i, ref, pred, std in zip(predictions.indices, predictions.force_ref, predictions.force_pred, spread):
        if ref is None or pred is None:
            continue
        s = structures[i]
        for atom, (r, p) in enumerate(zip(ref, pred)):
            values = " ".join(f"{v:.8f}" for v in (*r, *p, *(std[atom] if committee else ())))
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
