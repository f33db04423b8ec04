"""The final errors of a training as a person reads them: a small table in meV/atom and eV/Å."""

from __future__ import annotations

from collections.abc import Mapping

# (metric name after final/<split>/, column title, unit, factor from the metric's unit)
COLUMNS = (
    ("energy_rmse", "energy RMSE", "meV/atom", 1000.0),
    ("energy_mae", "energy MAE", "meV/atom", 1000.0),
    ("force_rmse", "force RMSE", "eV/Å", 1.0),
    ("force_rmse_vector", "|ΔF| RMSE", "eV/Å", 1.0),
    ("force_mae", "force MAE", "eV/Å", 1.0),
)
WIDTH = 12


def final_errors(metrics: Mapping[str, float], indent: str = "  ") -> str:
    """The ``final/{train,test}/*`` errors of ``metrics`` as a table: a row per set, a column per error with its unit."""
    splits = [split for split in ("train", "test") if f"final/{split}/energy_rmse" in metrics]
    columns = [c for c in COLUMNS if any(f"final/{split}/{c[0]}" in metrics for split in splits)]
    if not splits:
        return ""
    lines = [
        indent + " " * 6 + "".join(f"{title:>{WIDTH}}" for _, title, _, _ in columns),
        indent + " " * 6 + "".join(f"{unit:>{WIDTH}}" for _, _, unit, _ in columns),
    ]
    for split in splits:
        values = [metrics.get(f"final/{split}/{name}") for name, _, _, _ in columns]
        cells = "".join(f"{value * factor:>{WIDTH}.4g}" if value is not None else f"{'–':>{WIDTH}}"
                        for value, (_, _, _, factor) in zip(values, columns))
        lines.append(f"{indent}{split:<6}{cells}")
    return "\n".join(lines)


def open_command(uri: str, experiment_id: str | None, run_id: str) -> str:
    """How to look at run ``run_id``: its URL on an MLflow server, or the ``mlflow ui`` command for a local store."""
    path = f"#/experiments/{experiment_id}/runs/{run_id}" if experiment_id else ""
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {uri}   then open http://127.0.0.1:5000/{path}"
