"""``python -m aenet_exp ensemble runs=[<id|dir>,...] | sweep=<parent run id>``: finished runs as one committee
(options: :class:`~aenet_exp.config.schema.EnsembleConfig`).

The runs must share the data and the descriptor and network layout (:mod:`aenet_exp.ensemble.combine`). The
committee is evaluated on the structures none of the runs trained on (the intersection of their held-out
structures; a seed sweep splits differently per seed, so give its runs one test set with ``data.test_path``):
half of them, drawn with the first run's seed, calibrate its σ, the other half are its test set. The result is
saved like a training run (``potential.pt``, prediction files, plots) and recorded as its own MLflow run.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
from aenet_exp.build.stored import StoredRun, stored_run, yaml_text
from aenet_exp.calculator import Calculator
from aenet_exp.config.schema import EnsembleConfig
from aenet_exp.destinations import writable_folder
from aenet_exp.ensemble.combine import Incompatible, check_compatible, combine
from aenet_exp.errors import ConfigError
from aenet_exp.evaluation.errors import metrics_of
from aenet_exp.evaluation.outputs import write_predictions
from aenet_exp.evaluation.predictions import Predictions
from aenet_exp.evaluation.uncertainty import calibrate, check_held_out, uncertainty_metrics
from aenet_exp.files import write_atomically
from aenet_exp.model.locate import RUNS_SCHEME, load_potential
from aenet_exp.rundir import CONFIG_FILE, LOCK_FILE, MODEL_FILE, RunDirectory, refusal, remove_unused_run_directory
from aenet_exp.training.dataset import PreparedData, held_out
from aenet_exp.training.events import TrainingResult

ENSEMBLE_FILE = "ensemble.yaml"  # which runs the members came from


def ensemble(options: EnsembleConfig) -> list[Path]:
    """Run ``ensemble`` with its ``options``; returns the committee's model file.

    ``out`` and the MLflow store are checked before any run is loaded; ``out`` is held (its lock) until the
    committee is written and recorded, so no other run writes there meanwhile."""
    out = output_folder(options)
    if options.tracking.enabled:
        from aenet_exp.tracking.observer import check_store  # mlflow, seconds to import: only when recorded

        check_store(options.tracking.uri, options.tracking.experiment)
    made = not out.exists()
    owned = RunDirectory.claim(out, key="out")
    try:
        return assemble(options, out)
    except BaseException:
        if made:
            remove_unused_run_directory(out)  # a refused or stopped ensemble leaves no folder it made
        raise
    finally:
        owned.release()


def output_folder(options: EnsembleConfig) -> Path:
    """``out`` (by default ``outputs/ensembles/<time>``), checked: writable, not holding a run or in use, and empty
    unless ``overwrite``; ConfigError naming ``out``."""
    out = writable_folder(options.out or f"outputs/ensembles/{time.strftime('%Y-%m-%d_%H-%M-%S')}", "out")
    why = refusal(out, resuming=False, key="out")
    if why:
        raise ConfigError("out", why)
    if not options.overwrite and out.is_dir() and any(path.name != LOCK_FILE for path in out.iterdir()):
        raise ConfigError("out", f"{out} holds other files; give a new or empty folder, or overwrite=true to write "
                          "the committee's files among them")
    return out


def assemble(options: EnsembleConfig, out: Path) -> list[Path]:
    """The committee of ``options``' runs, calibrated, tested, saved in ``out`` and recorded."""
    uri = options.tracking.uri
    locations = sweep_jobs(options.sweep, uri) if options.sweep else run_locations(options.runs)
    if len(locations) < 2:
        raise ConfigError("runs", f"a committee needs at least two runs, got {len(locations)}")
    check_distinct_locations(locations)
    potentials = [load_potential(location, uri, key="runs") for location in locations]
    check_distinct_members(potentials, locations)
    runs = [stored_run(location, uri) for location in locations]
    committee = combined(potentials, locations)
    data, held = common_held_out(runs, locations)
    test, calibration = held_out(held, 50.0, runs[0].calibration_seed)
    calculator = Calculator(committee)
    references = data.atomic_energies if runs[0].cohesive else None
    fitted = calibrate(committee, lambda: predict(calculator, data, calibration, references))
    predictions = {"test": predict(calculator, data, test, references)}
    check_held_out(predictions["test"], "test")
    metrics = {f"final/{k}": v for k, v in metrics_of(predictions["test"], "test").items()}
    metrics |= {f"final/{k}": v for k, v in uncertainty_metrics(predictions["test"], "test", committee.calibration).items()}
    metrics |= fitted.metrics(len(calibration))
    save(out, committee, runs[0], locations, data, predictions)
    print(f"committee of {committee.members} members from {len(locations)} runs; {len(held)} structures none of them "
          f"trained on: {len(calibration)} calibrate σ, {len(test)} test it")
    print(f"  test: energy RMSE {1000 * metrics['final/test/energy_rmse']:.2f} meV/atom, NLL "
          f"{metrics['final/test/energy_nll']:.3f}, Spearman ρ {metrics['final/test/energy_spearman']:.3f}")
    if options.tracking.enabled:
        try:
            record(options, runs[0], locations, committee, data, held, TrainingResult({}, metrics, predictions, out))
        except KeyboardInterrupt as error:
            error.add_note(f"the committee is saved in {out}")
            raise
    return [out / MODEL_FILE]


def run_locations(runs: Sequence[str]) -> list[str]:
    """``runs=`` items: an existing path as it is, anything else as an MLflow run id (``runs:/<id>``)."""
    items = [item.strip() for item in runs if item.strip()]
    return [item if item.startswith(RUNS_SCHEME) or Path(item).exists() else f"{RUNS_SCHEME}{item}" for item in items]


def check_distinct_locations(locations: Sequence[str]) -> None:
    """ConfigError naming a run given twice: its members would join twice, and never disagree with themselves."""
    for index, location in enumerate(locations):
        if location in locations[:index]:
            raise ConfigError("runs", f"{location} is given twice; a committee needs distinct runs")


def check_distinct_members(potentials, locations: Sequence[str]) -> None:
    """ConfigError naming the first member whose network weights equal an earlier member's (the same run under
    another name, or members trained from one seed): identical members never disagree (σ = 0)."""
    seen: dict[bytes, str] = {}
    for potential, location in zip(potentials, locations):
        networks = {name: value for name, value in potential.state_dict().items() if name.startswith("networks.")}
        for k in range(potential.members):
            weights = b"".join(networks[name][k].detach().cpu().numpy().tobytes() for name in sorted(networks))
            member = f"{location} (member {k})" if potential.members > 1 else location
            if weights in seen:
                raise ConfigError("runs", f"{member} has the same weights as {seen[weights]}; identical members never "
                                  "disagree (σ = 0): give runs trained from distinct seeds")
            seen[weights] = member


def sweep_jobs(parent: str, uri: str) -> list[str]:
    """The FINISHED jobs of the sweep whose parent run is ``parent``, as ``runs:/<id>``, oldest first."""
    from aenet_exp.tracking.mlflow_run import MlflowRun  # mlflow, seconds to import: only for a sweep's runs

    try:
        jobs = MlflowRun.read(uri, parent).children()
    except Exception as error:  # MLflow's errors for an unknown run or store
        raise ConfigError("sweep", f"no run {parent} in {uri} ({str(error).splitlines()[0]})") from None
    finished = sorted((run for run in jobs if run.info.status == "FINISHED"), key=lambda run: run.info.start_time)
    if not finished:
        raise ConfigError("sweep", f"run {parent} has no FINISHED job")
    return [f"{RUNS_SCHEME}{run.info.run_id}" for run in finished]


def combined(potentials, locations: Sequence[str]):
    """The committee of all runs' members; an error naming the first run that does not fit the first one."""
    for potential, location in zip(potentials[1:], locations[1:]):
        try:
            check_compatible(potentials[0], potential)
        except Incompatible as error:
            raise ConfigError("runs", f"{location} cannot join {locations[0]} in a committee: {error}") from None
    return combine(potentials)


def common_held_out(runs: Sequence[StoredRun], locations: Sequence[str]) -> tuple[PreparedData, np.ndarray]:
    """The first run's data and the structures none of the runs trained on; errors naming a run on other data."""
    prepared = [run.prepared_data() for run in runs]
    digest = prepared[0].columns.digest()
    for data, location in zip(prepared[1:], locations[1:]):
        if data.columns.digest() != digest or len(data.structures) != len(prepared[0].structures):
            raise ConfigError("runs", f"{location} trained on other data than {locations[0]}")
    held = set(range(len(prepared[0].structures)))
    for data in prepared:
        held -= set(int(i) for i in data.train)
    held = np.array(sorted(held), dtype=int)
    if len(held) < 2:
        raise ConfigError("runs", f"{len(held)} structure(s) are held out of every run's training (each run splits "
                          "with its own seed); train the runs with one test set, data.test_path=<file>")
    return prepared[0], held


def predict(calculator: Calculator, data: PreparedData, indices: np.ndarray, references) -> Predictions:
    """The committee's predictions of ``data``'s structures ``indices``, labelled as the data labels them."""
    predicted = calculator.predict([data.structures[int(i)] for i in indices])
    return replace(
        predicted, indices=np.asarray(indices), energy_ref=data.columns.energy[indices],
        reference=data.columns.reference_energy(references)[indices] if references else None,
    )


def save(out: Path, committee, first: StoredRun, locations: Sequence[str], data: PreparedData,
         predictions: dict[str, Predictions]) -> None:
    """The committee, the first run's config, where its members came from, and its test predictions, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    committee.save(out / MODEL_FILE)
    write_atomically(out / CONFIG_FILE, first.yaml())
    write_atomically(out / ENSEMBLE_FILE, yaml_text({"runs": list(locations), "members": committee.members}))
    write_predictions(out, data.structures, predictions, energies=True, forces=True)


def record(options: EnsembleConfig, first: StoredRun, locations: Sequence[str], committee, data: PreparedData,
           held: np.ndarray, result: TrainingResult) -> None:
    """The committee as its own MLflow run: the first run's config, the runs it was made of, metrics, plots, model."""
    from aenet_exp.tracking.observer import MlflowObserver  # mlflow, seconds to import: only when recorded

    tracking = {**first.settings["tracking"], "uri": options.tracking.uri, "experiment": options.tracking.experiment,
                "run_name": f"ensemble of {len(locations)} runs",
                "log_model": True}  # the committee is the product, whatever its runs did
    observer = MlflowObserver(tracking, overrides=[f"ensemble runs={','.join(locations)}"], run_dir=result.output_dir)
    facts = {**data.facts(), "ensemble.runs": ",".join(locations), "ensemble.members": committee.members,
             "ensemble.held_out_structures": len(held)}
    settings = {**first.settings, "committee": {**first.settings.get("committee", {}), "name": "ensemble",
                                                "members": committee.members}}
    try:
        observer.on_start(settings, facts)
        observer.on_end(result)
    except BaseException as error:
        observer.on_failure(error)  # KILLED (SIGTERM) or FAILED, as a training's run
        raise
