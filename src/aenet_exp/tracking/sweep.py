"""One parent MLflow run per Hydra multirun sweep, found by its jobs through a tag."""

from __future__ import annotations

import atexit
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from aenet_exp.errors import first_line
from aenet_exp.tracking.retry import retry_locked

if TYPE_CHECKING:
    from aenet_exp.tracking.mlflow_run import MlflowRun

SWEEP_DIR_TAG = "aenet_exp.sweep_dir"
ROLE_TAG = "aenet_exp.role"
SWEPT_TAG = "aenet_exp.swept"  # the keys a sweep varies, comma-separated: what its jobs are named after
INTERRUPTED_REASON = "the sweep ended without Hydra's on_multirun_end (a job failed?)"


class SweepParentCallback(Callback):
    """Hydra callback: open a parent run when a multirun starts, finish it when it ends.

    Reads ``tracking.enabled``, ``tracking.uri`` and ``tracking.experiment``; does nothing
    when tracking is disabled. Hydra skips ``on_multirun_end`` when a job raises, so the
    parent is then marked FAILED at interpreter exit instead, or deleted when no job got as far
    as recording a run.
    """

    def __init__(self) -> None:
        self._parent: MlflowRun | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Open the parent run; a store that cannot take it stops the sweep before any job (one line, exit 2)."""
        if not OmegaConf.select(config, "tracking.enabled", default=False):
            return
        from aenet_exp.tracking.mlflow_run import MlflowRun  # mlflow: only for a tracked sweep

        sweep_dir = str(config.hydra.sweep.dir)
        try:
            self._parent = MlflowRun.start(
                uri=config.tracking.uri,
                experiment=config.tracking.experiment,
                run_name=Path(sweep_dir).name or time.strftime("sweep-%Y%m%d-%H%M%S"),
                params={},
                tags={SWEEP_DIR_TAG: sweep_dir, ROLE_TAG: "sweep", SWEPT_TAG: ",".join(swept_keys(config))},
            )
        except Exception as error:  # Hydra would only warn, and every job would record without its parent
            print(f"aenet_exp: error: tracking.uri: cannot record the sweep at {config.tracking.uri}: "
                  f"{first_line(error)}", file=sys.stderr)
            sys.exit(2)
        atexit.register(self._close_interrupted)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._parent is None:
            return
        atexit.unregister(self._close_interrupted)
        self._parent.finish("FINISHED")
        metric = OmegaConf.select(config, "optimized_metric", default="test/energy_rmse")
        print(sweep_table(self._parent.children(), str(metric), str(config.hydra.sweep.dir)))
        self._parent = None


    def _close_interrupted(self) -> None:
        """At exit without ``on_multirun_end``: FAILED, or deleted when no job recorded a run
        (a sweep stopped by a config error records nothing)."""
        if self._parent is None:
            return
        if self._parent.child_count() == 0:
            self._parent.delete()
        else:
            self._parent.finish("FAILED", INTERRUPTED_REASON)


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun varies: command-line overrides with several values (``a=1,2``, ``range(..)``, ...)
    and the keys a sweeper searches (``hydra.sweeper.params``)."""
    overrides = OverridesParser.create().parse_overrides(list(OmegaConf.select(config, "hydra.overrides.task", default=[])))
    keys = [o.get_key_element().lstrip("+~") for o in overrides if o.is_sweep_override()]
    searched = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    return list(dict.fromkeys([*keys, *searched]))


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
