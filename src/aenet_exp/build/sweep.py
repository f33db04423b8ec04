"""``train -m``'s Hydra callback: one parent MLflow run per multirun sweep (:mod:`aenet_exp.tracking.sweep`)."""

from __future__ import annotations

import atexit
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from aenet_exp.errors import first_line
from aenet_exp.tracking.sweep import INTERRUPTED_REASON, ROLE_TAG, SWEEP_DIR_TAG, SWEPT_TAG, sweep_table

if TYPE_CHECKING:
    from aenet_exp.tracking.mlflow_run import MlflowRun


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


