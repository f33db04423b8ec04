"""One parent MLflow run per Hydra multirun sweep, found by its jobs through a tag."""

from __future__ import annotations

from functools import partial

from aenet_exp.tracking.retry import retry_locked

SWEEP_DIR_TAG = "aenet_exp.sweep_dir"
ROLE_TAG = "aenet_exp.role"
SWEPT_TAG = "aenet_exp.swept"  # the keys a sweep varies, comma-separated: what its jobs are named after
INTERRUPTED_REASON = "the sweep ended without Hydra's on_multirun_end (a job failed?)"


def find_sweep_parent(uri: str, experiment: str, sweep_dir: str) -> str | None:
    """Id of the newest sweep parent run tagged with `sweep_dir` in `experiment`, else None.

    `sweep_dir` must be the same string the callback saw (``hydra.sweep.dir`` as configured).
    """
    from aenet_exp.tracking.mlflow_run import open_client  # mlflow: only for a tracked sweep

    client = open_client(uri)
    found = retry_locked(partial(client.get_experiment_by_name, experiment))
    if found is None:
        return None
    runs = retry_locked(
        partial(
            client.search_runs,
            [found.experiment_id],
            filter_string=(
                f"tags.`{SWEEP_DIR_TAG}` = {_sql_string(sweep_dir)}"
                f" AND tags.`{ROLE_TAG}` = 'sweep'"
            ),
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
    )
    return runs[0].info.run_id if runs else None


def _sql_string(value: str) -> str:
    """Quote `value` for an MLflow search filter, which has no escapes, only two quote kinds."""
    for quote in "'\"":
        if quote not in value:
            return f"{quote}{value}{quote}"
    raise ValueError(f"cannot search for a value with both quote kinds: {value!r}")


def sweep_table(jobs: list, metric: str, sweep_dir: str) -> str:
    """The jobs of a sweep, best first by ``final/<metric>``: what each set differently, and its test errors."""
    overrides = [job.data.tags.get("aenet_exp.overrides", "").split() for job in jobs]
    shared = set.intersection(*map(set, overrides)) if overrides else set()
    differing = [" ".join(o for o in job if o not in shared) or "(none)" for job in overrides]
    key = f"final/{metric}"
    ranked = sorted(zip(jobs, differing), key=lambda pair: pair[0].data.metrics.get(key, float("inf")))
    width = max([len(text) for text in differing] + [len("overrides")])
    lines = [f"sweep {sweep_dir}: {len(jobs)} jobs, best first by {metric}",
             f"  {'overrides':<{width}}  {'E test':>9}  {'F test':>8}  {'|ΔF| test':>9}  status",
             f"  {'':<{width}}  {'meV/atom':>9}  {'eV/Å':>8}  {'eV/Å':>9}"]
    for job, text in ranked:
        m = job.data.metrics
        cells = [f"{m[k] * f:.4g}" if k in m else "–" for k, f in (("final/test/energy_rmse", 1000.0),
                 ("final/test/force_rmse", 1.0), ("final/test/force_rmse_vector", 1.0))]
        lines.append(f"  {text:<{width}}  {cells[0]:>9}  {cells[1]:>8}  {cells[2]:>9}  {job.info.status}")
    return "\n".join(lines)
