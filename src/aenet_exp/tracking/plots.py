"""Learning-curve and parity PNGs, drawn with the Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aenet_exp.evaluation.uncertainty import miscalibration_area, observed_coverage
from aenet_exp.files import write_atomically

ArrayPair = tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]
PANEL_SIZE = (4.5, 4.0)


@dataclass(frozen=True)
class _CurvePanel:
    suffix: str
    ylabel: str
    scale: float
    log_y: bool


_CURVE_PANELS = (
    _CurvePanel("energy_rmse", "energy RMSE (meV/atom)", 1000.0, True),
    _CurvePanel("force_rmse", "force RMSE (eV/Å)", 1.0, False),
)


def learning_curve_png(history: Mapping[str, Sequence[float]], path: str | Path) -> None:
    """Plot per-epoch energy RMSE (given in eV/atom, drawn in meV/atom, log y) and force RMSE
    (eV/Å) panels, one line per metric such as ``train/energy_rmse``; absent panels are omitted.
    """
    panels = [
        (panel, {name: values for name, values in history.items() if name.endswith(panel.suffix)})
        for panel in _CURVE_PANELS
    ]
    panels = [(panel, series) for panel, series in panels if series]
    if not panels:
        raise ValueError(f"no energy or force RMSE series in history keys {sorted(history)}")
    fig = _figure(len(panels))
    for ax, (panel, series) in zip(fig.axes, panels):
        for name, values in series.items():
            epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, np.asarray(values, dtype=float) * panel.scale, label=name)
        if panel.log_y:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(panel.ylabel)
        ax.legend()
    _save_atomic(fig, path)


def parity_png(
    path: str | Path,
    energies: Mapping[str, ArrayPair],
    forces: Mapping[str, ArrayPair] | None = None,
    energy_quantity: str = "energy",
) -> None:
    """Reference-vs-predicted scatter per set (e.g. 'train', 'test') with the y=x line: energies per atom
    (eV/atom; ``energy_quantity`` names them, e.g. relative to the atoms' reference energies), plus force
    components (eV/Å) when given; each set's RMSE (meV/atom, eV/Å) in the legend.
    """
    fig = _figure(1 if forces is None else 2)
    _parity_panel(fig.axes[0], energies, energy_quantity, "eV/atom", 1000.0, "meV/atom")
    if forces is not None:
        _parity_panel(fig.axes[1], forces, "force component", "eV/Å", 1.0, "eV/Å")
    _save_atomic(fig, path)


def _parity_panel(
    ax: Axes,
    sets: Mapping[str, ArrayPair],
    quantity: str,
    unit: str,
    rmse_scale: float,
    rmse_unit: str,
) -> None:
    """Scatter each set's predictions against references, each set's RMSE in its legend entry."""
    lows, highs = [], []
    for name, (reference, predicted) in sets.items():
        ref = np.ravel(np.asarray(reference, dtype=float))
        pred = np.ravel(np.asarray(predicted, dtype=float))
        label = f"{name}: RMSE {_rmse(ref, pred) * rmse_scale:.3g} {rmse_unit}"
        ax.scatter(ref, pred, s=4, alpha=0.5, label=label, rasterized=True)
        lows.append(min(ref.min(initial=np.inf), pred.min(initial=np.inf)))
        highs.append(max(ref.max(initial=-np.inf), pred.max(initial=-np.inf)))
    if lows and np.isfinite(min(lows)):
        ax.plot([min(lows), max(highs)], [min(lows), max(highs)], "k--", lw=1, label="y = x")
    ax.set_xlabel(f"reference {quantity} ({unit})")
    ax.set_ylabel(f"predicted {quantity} ({unit})")
    ax.legend(fontsize="small")


def _rmse(reference: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - reference) ** 2))) if reference.size else float("nan")


def _figure(n_panels: int) -> Figure:
    """A figure with `n_panels` side-by-side axes on an Agg canvas."""
    fig = Figure(figsize=(PANEL_SIZE[0] * n_panels, PANEL_SIZE[1]), layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(1, n_panels, squeeze=False)
    return fig


def _save_atomic(fig: Figure, path: str | Path) -> None:
    """Write `fig` as PNG to `path` atomically."""
    write_atomically(path, lambda temporary: fig.savefig(temporary, format="png", dpi=120))


def calibration_png(path: str | Path, quantities: Mapping[str, ArrayPair], levels: np.ndarray) -> None:
    """A committee's calibration: for each quantity (e.g. 'energy per atom', 'force component'), the observed
    fraction of errors inside the central Gaussian interval of each expected fraction ``levels``, against that
    fraction (the diagonal: calibrated; below it: σ too small). ``quantities`` maps a name to (errors, σ)."""
    fig = _figure(1)
    ax = fig.axes[0]
    for name, (errors, sigma) in quantities.items():
        area = miscalibration_area(np.asarray(errors), np.asarray(sigma), levels)
        ax.plot(levels, observed_coverage(np.asarray(errors), np.asarray(sigma), levels), label=f"{name}: area {area:.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set_xlabel("expected fraction inside the interval")
    ax.set_ylabel("observed fraction inside the interval")
    ax.legend(fontsize="small")
    _save_atomic(fig, path)


def error_vs_sigma_png(path: str | Path, quantities: Mapping[str, tuple[ArrayPair, str]]) -> None:
    """|error| against predicted σ, log-log, one panel per quantity (name -> ((errors, σ), unit)), with the
    lines |e| = σ and |e| = 2σ."""
    fig = _figure(len(quantities))
    for ax, (name, ((errors, sigma), unit)) in zip(fig.axes, quantities.items()):
        errors, sigma = np.abs(np.ravel(errors)), np.ravel(sigma)
        ax.scatter(sigma, errors, s=4, alpha=0.5, rasterized=True)
        positive = sigma[sigma > 0]
        if positive.size:
            span = np.array([positive.min(), positive.max()])
            ax.plot(span, span, "k--", lw=1, label="|error| = σ")
            ax.plot(span, 2 * span, "k:", lw=1, label="|error| = 2σ")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.legend(fontsize="small")
        ax.set_xlabel(f"committee σ of {name} ({unit})")
        ax.set_ylabel(f"|error| of {name} ({unit})")
    _save_atomic(fig, path)


def sigma_histogram_png(path: str | Path, scores: np.ndarray, threshold: float, criterion: str) -> None:
    """Histogram of a pool's committee disagreement ``scores`` (``criterion`` names it and its unit), with the
    selection threshold (the smallest selected score) as a vertical line."""
    fig = _figure(1)
    ax = fig.axes[0]
    ax.hist(np.asarray(scores, dtype=float), bins=50)
    if np.isfinite(threshold):
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"selected ≥ {threshold:.3g}")
        ax.legend(fontsize="small")
    ax.set_xlabel(criterion)
    ax.set_ylabel("pool structures")
    _save_atomic(fig, path)


def sigma_along_trajectories_png(path: str | Path, frames: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                                 levels: tuple[float, float], criterion: str) -> None:
    """A generation's committee σ along each trajectory (label -> (MD steps, σ)), with the trust levels as
    horizontal lines (``criterion`` names σ and its unit)."""
    fig = _figure(1)
    ax = fig.axes[0]
    for label, (steps, sigma) in frames.items():
        ax.plot(steps, sigma, marker=".", label=label)
    for level, style in zip(levels, ("--", ":")):
        ax.axhline(level, color="k", ls=style, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("MD step")
    ax.set_ylabel(criterion)
    if frames:
        ax.legend(fontsize="small")
    _save_atomic(fig, path)


def errors_vs_labels_png(path: str | Path, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                         ylabel: str) -> None:
    """Error against the number of labels (name -> (labels, errors)): a campaign's learning curve."""
    fig = _figure(1)
    ax = fig.axes[0]
    for name, (labels, errors) in curves.items():
        ax.plot(labels, errors, marker="o", label=name)
    ax.set_xlabel("labels")
    ax.set_ylabel(ylabel)
    if curves:
        ax.legend(fontsize="small")
    _save_atomic(fig, path)
