"""What ``train``'s Hydra app (:func:`aenet_exp.build.apps.train_app`) composes around training: the MLflow observer,
the checks before Hydra makes the run folder, and the run's last lines and returned metric."""

from __future__ import annotations

import copy
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from aenet_exp.build.prepare import prepare
from aenet_exp.cli.common import fail
from aenet_exp.config.validation import OPTIMIZED_METRICS
from aenet_exp.errors import UserError
from aenet_exp.report import final_errors, open_command
from aenet_exp.rundir import KEY, refusal


def observers_for(cfg: DictConfig) -> list:
    """The MLflow observer of this job (none when ``tracking.enabled`` is false)."""
    if not cfg.tracking.enabled:
        return []
    from aenet_exp.tracking.observer import MlflowObserver, recorded_run_id

    hydra_cfg = HydraConfig.get()
    sweep_dir = hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else None
    tracking = OmegaConf.to_container(cfg.tracking, resolve=True)
    if cfg.resume:  # record where the run was recorded, whatever this command line says
        from aenet_exp.training.checkpoint import load_checkpoint

        tracking = OmegaConf.to_container(OmegaConf.create(load_checkpoint(cfg.resume)["config"]).tracking)
    run_dir = cfg.resume or hydra_cfg.runtime.output_dir
    resume_id = recorded_run_id(cfg.resume) if cfg.resume else None
    return [MlflowObserver(tracking, list(hydra_cfg.overrides.task), sweep_dir, run_dir, resume_id)]


def ending(metrics: dict[str, float], run_dir: str, observers: list) -> str:
    """The last lines of a run: its final errors with units, its folder, its MLflow run and how to open it."""
    lines = ["done: errors of the final model", final_errors(metrics), f"run folder: {run_dir}"]
    recorded = next((o.run for o in observers if getattr(o, "run", None) is not None), None)
    if recorded is not None:
        uri = observers[0].tracking["uri"]
        lines += [f"MLflow run: {recorded.run_id} in experiment '{observers[0].tracking['experiment']}'",
                  f"  {open_command(uri, recorded.experiment_id, recorded.run_id)}"]
    return "\n".join(line for line in lines if line)


def optimized_value(metrics: dict[str, float], name: str) -> float | None:
    """``name``'s final value (``final/<name>``, else its last epoch's), returned to the sweeper.

    A multirun job that did not produce it (no test structures, no forces) fails: the sweeper
    would have nothing to compare.
    """
    value = metrics.get(f"final/{name}", metrics.get(name))
    if value is None and HydraConfig.get().mode == RunMode.MULTIRUN:
        produced = [m for m in OPTIMIZED_METRICS if f"final/{m}" in metrics or m in metrics]
        fail(f"optimized_metric: this job produced no {name} (no test structures or no forces); expected one of {produced}")
    return value


class BeforeTheRun(Callback):
    """Hydra callback: check the config and the run directory before Hydra makes the folder and writes
    ``.hydra/`` there, so a run refused for a bad value or an occupied folder leaves nothing behind."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if int(os.environ.get("RANK", "0")) > 0:  # torchrun: rank 0 checks
            return
        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        try:
            prepare(task, list(config.hydra.overrides.task), warnings=False)
        except UserError as error:
            fail(str(error).splitlines()[0])
        if config.hydra.mode == RunMode.MULTIRUN:
            return
        resume = task.resume
        why = refusal(Path(resume or config.hydra.run.dir), resuming=resume is not None)
        if why is not None:
            fail(f"{KEY}: {why}")
