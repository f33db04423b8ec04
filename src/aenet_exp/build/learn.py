"""``learn``'s composition: a campaign (:class:`aenet_exp.learning.campaign.Campaign`) from the composed config,
each generation's training composed as ``train`` composes it, and the campaign's MLflow record."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from omegaconf import DictConfig, OmegaConf

from aenet_exp.build.training import run_training, section
from aenet_exp.calculator import Calculator
from aenet_exp.data import Structure, read_structures
from aenet_exp.errors import ConfigError
from aenet_exp.files import write_atomically
from aenet_exp.interrupts import terminated_as_interrupt
from aenet_exp.learning.campaign import EXPLORED, SELECTED, Campaign, Plan, Recorder, Selection, State, read_frames
from aenet_exp.learning.explore import Exploration
from aenet_exp.learning.oracles import Oracle
from aenet_exp.learning.trust import TrustWindow
from aenet_exp.model.potential import Potential
from aenet_exp.report import open_command
from aenet_exp.rundir import CHECKPOINT_FILE, CONFIG_FILE, MODEL_FILE

LEARN_GROUPS = ("explore", "select", "oracle", "campaign")


# ---------------------------------------------------------------- the loop's groups as typed objects


def exploration(cfg: DictConfig) -> Exploration:
    """``explore.*``: the keys of the option chosen (``md``: friction; ``npt``: pressure)."""
    keys = section(cfg, "explore")
    return Exploration(keys.pop("name"), tuple(float(t) for t in keys.pop("temperatures")),
                       **{key: value for key, value in keys.items() if key != "start_path"})


def selection(cfg: DictConfig) -> Selection:
    s = cfg.select
    return Selection(s.by, TrustWindow(s.trust_low, s.trust_high), s.max_per_generation, s.diversity)


def oracle(cfg: DictConfig) -> Oracle:
    """``oracle.*``: the keys of the oracle chosen."""
    keys = section(cfg, "oracle")
    return Oracle(keys.pop("name"), **keys)


def plan(cfg: DictConfig) -> Plan:
    c = cfg.campaign
    return Plan(c.generations, c.labels_budget, c.converged, c.warm_start, cfg.seed)


def atoms_of(structure) -> Atoms:
    """A :class:`~aenet_exp.data.Structure` as ASE atoms, its energy and forces as single-point results when it has them."""
    atoms = Atoms(structure.species, positions=structure.positions, cell=structure.cell, pbc=structure.pbc)
    if structure.energy is not None:
        atoms.calc = SinglePointCalculator(atoms, energy=structure.energy, forces=structure.forces)
    return atoms


def structures_at(location) -> list[Atoms]:
    """The structures at ``location`` (files, a directory, a glob, an archive or a list) as ASE atoms."""
    return [atoms_of(s) for s in read_structures(location)]


def starts(cfg: DictConfig, periodic_only: bool) -> list[Atoms]:
    """Where the trajectories start: ``explore.start_path``, else the seed data; ``npt`` takes periodic cells only."""
    key = "explore.start_path" if cfg.explore.start_path is not None else "data.path"
    group, name = key.split(".")
    found = structures_at(section(cfg, group)[name])
    if periodic_only and not all(a.pbc.all() for a in found):
        raise ConfigError("explore", f"is npt, which needs periodic cells, but {key} has structures without a cell; use "
                          "explore=md")
    return found


def labelled_test(cfg: DictConfig) -> list[Structure]:
    """``campaign.test_path``'s structures, each with its energy and forces (what the committee is tested on)."""
    if cfg.campaign.test_path is None:
        return []
    found = read_structures(section(cfg, "campaign")["test_path"])
    if not all(s.energy is not None and s.forces is not None for s in found):
        raise ConfigError("campaign.test_path", "expected structures labelled with energy and forces")
    return found


# ---------------------------------------------------------------- each generation's training


def generation_config(cfg: DictConfig, labelled: Path | None, previous: Path | None, run_dir: Path) -> DictConfig:
    """``train``'s config of a generation: the seed data plus the labels so far, from the previous weights
    (warm start) or new ones; a half-trained generation resumes."""
    train = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for group in LEARN_GROUPS:
        train.pop(group)
    seed = section(cfg, "data")["path"]
    train.data.path = [*(seed if isinstance(seed, list) else [seed]), *([str(labelled)] if labelled else [])]
    train.data.name = f"{cfg.data.name or 'seed'}+labels"
    train.init_from = str(previous) if previous is not None else None
    train.resume = str(run_dir) if (run_dir / CHECKPOINT_FILE).is_file() else None
    if train.resume:
        train.init_from = None
    return train


def generation_trainer(cfg: DictConfig, parent_run_id: str | None):
    """``train(generation, run folder, labels file or None, previous model or None)`` for the campaign."""

    def train(generation: int, run_dir: Path, labelled: Path | None, previous: Path | None) -> Path:
        if (run_dir / MODEL_FILE).is_file():  # trained before a stop
            return run_dir / MODEL_FILE
        has_checkpoint = (run_dir / CHECKPOINT_FILE).is_file()
        if run_dir.exists() and not has_checkpoint:  # stopped before its first checkpoint: trained anew
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        train_cfg = generation_config(cfg, labelled, previous, run_dir)
        run_training(train_cfg, run_dir, generation_observers(cfg, generation, run_dir, parent_run_id, has_checkpoint))
        return run_dir / MODEL_FILE

    return train


def generation_observers(cfg: DictConfig, generation: int, run_dir: Path, parent_run_id: str | None,
                         resuming: bool) -> list:
    """The MLflow observer of a generation's training: a child run of the campaign's."""
    if parent_run_id is None:
        return []
    from aenet_exp.tracking.observer import MlflowObserver, recorded_run_id  # mlflow: only when recorded

    tracking = {**section(cfg, "tracking"), "run_name": f"generation {generation}", "register": None}
    return [MlflowObserver(tracking, [f"learn generation={generation}"], run_dir=run_dir,
                           resume_run_id=recorded_run_id(run_dir) if resuming else None, parent_run_id=parent_run_id)]


def load_committee(path: Path) -> tuple[Calculator, object]:
    potential = Potential.load(path)
    return Calculator(potential), potential.descriptor


# ---------------------------------------------------------------- the campaign


def run_campaign(cfg: DictConfig, directory: Path) -> State:
    """Run (or continue) the campaign of ``cfg`` in ``directory``, recorded in MLflow as its own run."""
    if not (directory / CONFIG_FILE).is_file():
        stored = OmegaConf.to_container(cfg, resolve=True)
        stored["resume"] = None
        write_atomically(directory / CONFIG_FILE, OmegaConf.to_yaml(stored))
    window = selection(cfg)
    record = campaign_record(cfg, directory)
    campaign = Campaign(directory, plan(cfg), exploration(cfg), window, oracle(cfg),
                        starts(cfg, cfg.explore.name == "npt"),
                        generation_trainer(cfg, record.run_id if record is not None else None), load_committee,
                        record if record is not None else Recorder(), labelled_test(cfg))
    with terminated_as_interrupt():
        try:
            state = campaign.run()
        except BaseException as error:
            if record is not None:
                record.run.abort(error)
            raise
    if record is not None:
        log_artifacts(record, directory, state, window)
        record.finish("FINISHED")
    print(summary(state, directory, cfg, record))
    return state


def campaign_record(cfg: DictConfig, directory: Path):
    """The campaign's parent MLflow run (None with ``tracking.enabled=false``)."""
    if not cfg.tracking.enabled:
        return None
    from aenet_exp.tracking.campaign import CampaignRecord  # mlflow: only when recorded
    from aenet_exp.tracking.flatten import flatten_params

    params = flatten_params({k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "resume"})
    name = cfg.tracking.run_name or f"learn {cfg.data.name or 'campaign'} oracle={cfg.oracle.name}"
    record = CampaignRecord(cfg.tracking.uri, cfg.tracking.experiment, directory, name, params)
    print(f"MLflow run {record.run_id} in experiment '{cfg.tracking.experiment}' at {cfg.tracking.uri}")
    return record


def log_artifacts(record, directory: Path, state: State, window: Selection) -> None:
    """Each generation's selected structures and σ along its trajectories, the learning curve, the last committee."""
    from aenet_exp.tracking.plots import errors_vs_labels_png, sigma_along_trajectories_png

    plots = directory / "plots"
    for name in sorted(p.name for p in (directory / "generations").iterdir()):
        folder = directory / "generations" / name
        if (folder / SELECTED).is_file():
            record.log_artifact(folder / SELECTED, f"generations/{name}")
        if (folder / EXPLORED).is_file():
            frames = read_frames(folder / EXPLORED)
            curves = {}
            for atoms in frames:
                label = f"{atoms.info['temperature']:g} K #{atoms.info['trajectory']}"
                steps, sigma = curves.setdefault(label, ([], []))
                steps.append(atoms.info["step"])
                sigma.append(atoms.info[f"{window.by}_sigma"])
            path = plots / f"sigma_generation_{name}.png"
            unit = "eV/Å" if window.by == "forces" else "eV/atom"
            sigma_along_trajectories_png(path, curves, (window.window.low, window.window.high), f"committee σ ({unit})")
            record.log_artifact(path, "plots")
    curves = {}
    for key, label in (("campaign/new/force_rmse", "new labels, before training on them"),
                       ("campaign/test/force_rmse", "test set")):
        points = [(m["campaign/labels"], m[key]) for m in state.generations.values() if key in m and "campaign/labels" in m]
        if points:
            curves[label] = tuple(map(list, zip(*points)))
    if curves:
        errors_vs_labels_png(plots / "learning_curve.png", curves, "force RMSE (eV/Å)")
        record.log_artifact(plots / "learning_curve.png", "plots")
    for name in (MODEL_FILE, "labels.xyz"):
        if (directory / name).is_file():
            record.log_artifact(directory / name, None)


def summary(state: State, directory: Path, cfg: DictConfig, record) -> str:
    """The campaign's table (a row per generation) and where its files and MLflow run are."""
    lines = [f"done: {state.reason}",
             f"  {'gen':>3} {'labels':>6} {'accurate':>9} {'candidate':>9} {'failed':>7} {'new F RMSE':>11} {'test F RMSE':>11}",
             f"  {'':>3} {'':>6} {'%':>9} {'%':>9} {'%':>7} {'eV/Å':>11} {'eV/Å':>11}"]
    for generation, m in sorted(state.generations.items(), key=lambda item: int(item[0])):
        cells = [m.get(f"campaign/{name}_fraction") for name in ("accurate", "candidate", "failed")]
        percent = [f"{100 * c:>{w}.1f}" if c is not None and np.isfinite(c) else f"{'–':>{w}}" for c, w in zip(cells, (9, 9, 7))]
        errors = [m.get(key) for key in ("campaign/new/force_rmse", "campaign/test/force_rmse")]
        shown = [f"{e:>11.4f}" if e is not None else f"{'–':>11}" for e in errors]
        lines.append(f"  {generation:>3} {int(m.get('campaign/labels', 0)):>6} {' '.join(percent)} {' '.join(shown)}")
    lines.append(f"campaign folder: {directory} (the last committee: {directory / MODEL_FILE})")
    if record is not None:
        lines += [f"MLflow run: {record.run_id} in experiment '{cfg.tracking.experiment}'",
                  f"  {open_command(cfg.tracking.uri, record.run.experiment_id, record.run_id)}"]
    return "\n".join(lines)


def interrupted(directory: Path) -> list[str]:
    """What a stopped campaign leaves: its labels and how to continue it; nothing before it has begun (its config is
    stored first)."""
    if not (directory / CONFIG_FILE).is_file():
        return []
    return [f"labels stored so far are kept in {directory}: resume={directory} continues"]

