"""The campaign loop: per generation, train the committee on everything labelled so far, explore with it, sort the
frames into the trust window, pick candidates, label them with the oracle; stop when the accurate fraction reaches
``converged``, after ``generations``, or when the label budget is spent.

Every stage leaves its result in the campaign directory before the next starts, and ``campaign.json`` says which
stage comes next, so a campaign stopped anywhere resumes where it stopped: training through the generation's own
``resume``, exploration and selection by repeating a stage whose file is missing, labelling by sending only the
selected structures whose key is not in the label store.

    <campaign>/campaign.json             the state: next generation and stage, what each generation measured
    <campaign>/labels/, labels.xyz, labels.h5, failed/, failed_labels.xyz    (learning.labels.LabelStore)
    <campaign>/generations/<g>/run/      generation g's training run folder
    <campaign>/generations/<g>/explored.xyz, selected.xyz    the frames it explored (σ and class in info), its picks
    <campaign>/potential.pt              the last committee
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from ase import Atoms

from aenet_exp.calculator import structure_of
from aenet_exp.data import Structure
from aenet_exp.errors import UserError
from aenet_exp.files import write_atomically
from aenet_exp.learning.diversity import choose
from aenet_exp.learning.explore import Exploration, Frame, explore, mean_features
from aenet_exp.learning.labels import LabelStore, atoms_key
from aenet_exp.learning.oracles import Label, Oracle, label_all
from aenet_exp.learning.trust import CANDIDATE, CLASSES, TrustWindow
from aenet_exp.rundir import MODEL_FILE

STATE_FILE = "campaign.json"
STAGES = ("train", "explore", "select", "label")
EXPLORED, SELECTED = "explored.xyz", "selected.xyz"


@dataclass(frozen=True)
class Selection:
    """``select.*``: what σ frames are judged by (``forces`` or ``energy``), the trust window, how many candidates a
    generation labels at most, and the diversity rule among them."""

    by: str
    window: TrustWindow
    max_per_generation: int
    diversity: str


@dataclass(frozen=True)
class Plan:
    """``campaign.*``: at most ``generations`` trainings, at most ``labels_budget`` labels in all (None: no limit),
    stop when the accurate fraction reaches ``converged``; ``warm_start``: a generation starts from the previous one's
    weights; ``seed`` drives the exploration."""

    generations: int
    labels_budget: int | None
    converged: float
    warm_start: bool
    seed: int


@dataclass
class State:
    """What ``campaign.json`` holds: the next generation and stage, and each generation's measurements."""

    generation: int = 0
    stage: str = "train"
    finished: bool = False
    reason: str = ""
    generations: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> "State":
        path = directory / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()

    def save(self, directory: Path) -> None:
        write_atomically(directory / STATE_FILE, json.dumps(self.__dict__, indent=1, sort_keys=True) + "\n")

    def record(self, generation: int, metrics: dict[str, float]) -> None:
        self.generations.setdefault(str(generation), {}).update(metrics)


class Recorder:
    """Where a campaign reports (the MLflow parent run; this base records nothing)."""

    def log_generation(self, generation: int, metrics: dict[str, float]) -> None: ...

    def log_artifact(self, path: Path, artifact_path: str) -> None: ...


# train(generation, its run folder, the labelled structures file or None, the previous generation's model or None)
# -> the trained committee's model file
TrainGeneration = Callable[[int, Path, Path | None, Path | None], Path]
# a committee model file -> (its ASE calculator, its descriptor)
LoadCommittee = Callable[[Path], tuple[object, object]]


@dataclass
class Campaign:
    """One active-learning campaign in ``directory`` (see the module)."""

    directory: Path
    plan: Plan
    exploration: Exploration
    selection: Selection
    oracle: Oracle
    starts: Sequence[Atoms]
    train: TrainGeneration
    load: LoadCommittee
    recorder: Recorder = field(default_factory=Recorder)
    test: Sequence[Structure] = ()
    say: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.store = LabelStore(self.directory)
        self.state = State.load(self.directory)

    def generation_dir(self, generation: int) -> Path:
        return self.directory / "generations" / f"{generation:03d}"

    def model(self, generation: int) -> Path:
        return self.generation_dir(generation) / "run" / MODEL_FILE

    def run(self) -> State:
        """Run (or go on with) the campaign until it stops; returns its final state."""
        while not self.state.finished:
            stage = self.state.stage
            getattr(self, f"_{stage}")(self.state.generation)
        return self.state

    def _advance(self, stage: str, generation: int | None = None) -> None:
        self.state.stage = stage
        if generation is not None:
            self.state.generation = generation
        self.state.save(self.directory)

    def _finish(self, reason: str) -> None:
        self.state.finished, self.state.reason = True, reason
        shutil.copyfile(self.model(self.state.generation), self.directory / f".{MODEL_FILE}.tmp")
        (self.directory / f".{MODEL_FILE}.tmp").replace(self.directory / MODEL_FILE)
        self.state.save(self.directory)
        self.say(f"campaign finished after generation {self.state.generation}: {reason}")

    def _log(self, generation: int, metrics: dict[str, float]) -> None:
        self.state.record(generation, metrics)
        self.recorder.log_generation(generation, metrics)

    # ------------------------------------------------------------------ stages

    def _train(self, generation: int) -> None:
        start = time.perf_counter()
        labelled = self.directory / "labels.xyz" if self.store.count() else None
        previous = self.model(generation - 1) if generation > 0 and self.plan.warm_start else None
        self.train(generation, self.generation_dir(generation) / "run", labelled, previous)
        metrics = {"campaign/train_s": time.perf_counter() - start, "campaign/labels": float(self.store.count())}
        if self.test:
            metrics |= {f"campaign/test/{k}": v for k, v in errors(self.load(self.model(generation))[0], self.test).items()}
        self._log(generation, metrics)
        self._advance("explore")

    def _explore(self, generation: int) -> None:
        start = time.perf_counter()
        calculator, _ = self.load(self.model(generation))
        rng = np.random.default_rng([self.plan.seed, generation])
        frames = explore(self.starts, calculator, self.exploration, self.selection.window, self.selection.by, rng)
        sigma = np.array([f.sigma(self.selection.by) for f in frames])
        classes = self.selection.window.classify(sigma)
        write_frames(self.generation_dir(generation) / EXPLORED, frames, classes)
        fractions = self.selection.window.fractions(sigma)
        metrics = {f"campaign/{name}_fraction": fractions[name] for name in CLASSES}
        metrics |= {"campaign/max_sigma": float(sigma.max(initial=0.0)), "campaign/explore_s": time.perf_counter() - start,
                    "campaign/frames": float(len(frames))}
        for temperature in self.exploration.temperatures:
            at = np.array([f.temperature == temperature for f in frames])
            for name, value in self.selection.window.fractions(sigma[at]).items():
                metrics[f"campaign/T{temperature:g}/{name}_fraction"] = value
        self._log(generation, metrics)
        self.say(f"generation {generation}: {len(frames)} frames, accurate {fractions['accurate']:.1%}, candidate "
                 f"{fractions['candidate']:.1%}, failed {fractions['failed']:.1%}")
        if fractions["accurate"] >= self.plan.converged:
            self._finish(f"converged: {fractions['accurate']:.1%} of the explored frames are accurate")
        elif generation + 1 >= self.plan.generations:
            self._finish(f"the last of campaign.generations={self.plan.generations} generations")
        elif self.budget_left() == 0:
            self._finish(f"the label budget campaign.labels_budget={self.plan.labels_budget} is spent")
        else:
            self._advance("select")

    def budget_left(self) -> int | None:
        return None if self.plan.labels_budget is None else max(0, self.plan.labels_budget - self.store.count())

    def _select(self, generation: int) -> None:
        explored = read_frames(self.generation_dir(generation) / EXPLORED)
        known = self.store.keys()
        candidates = [a for a in explored if a.info["trust"] == CANDIDATE and atoms_key(a) not in known]
        wanted = self.selection.max_per_generation
        if self.budget_left() is not None:
            wanted = min(wanted, self.budget_left())
        sigma = np.array([a.info[f"{self.selection.by}_sigma"] for a in candidates])
        features = None
        if self.selection.diversity != "none" and candidates:
            _, descriptor = self.load(self.model(generation))
            features = mean_features(descriptor, [frame_of(a) for a in candidates])
        chosen = [candidates[int(i)] for i in choose(self.selection.diversity, sigma, features, wanted)]
        write_atomically(self.generation_dir(generation) / SELECTED, xyz_writer(chosen))
        self._log(generation, {"campaign/selected": float(len(chosen))})
        if chosen:
            self._advance("label")
        else:
            self._finish(f"no new candidates in generation {generation}: no explored frame lies between "
                         f"select.trust_low and select.trust_high without a label already, so another generation "
                         f"would train on the same labels (widen the trust window or explore further)")

    def _label(self, generation: int) -> None:
        selected = read_frames(self.generation_dir(generation) / SELECTED)
        known = self.store.keys()
        todo = [a for a in selected if atoms_key(a) not in known]
        start = time.perf_counter()
        arrived: list[tuple[Atoms, Label]] = []

        def stored(index: int, label: Label) -> None:
            atoms = todo[index]
            self.store.add(atoms, label, {"generation": generation, "oracle": self.oracle.kind})
            arrived.append((atoms, label))

        def failed(index: int, reason: str) -> None:
            self.store.add_failure(todo[index], reason, {"generation": generation, "oracle": self.oracle.kind})
            self.say(f"label failed: {reason}")

        if todo:
            self.say(f"generation {generation}: labelling {len(todo)} structures with oracle={self.oracle.kind}")
        label_all(self.oracle, todo, stored, failed)
        if todo and not arrived and len(todo) == len(selected):
            raise LabelsFailed(f"oracle: every label of generation {generation} failed (reasons in "
                               f"{self.directory / 'failed_labels.xyz'})")
        metrics = {"campaign/oracle_s": time.perf_counter() - start, "campaign/new_labels": float(len(arrived)),
                   "campaign/failed_labels": float(len(todo) - len(arrived))}
        new = [replace(structure_of(a), energy=label.energy, forces=label.forces) for a, label in arrived]
        if new:
            metrics |= {f"campaign/new/{k}": v for k, v in errors(self.load(self.model(generation))[0], new).items()}
        self._log(generation, metrics)
        self._advance("train", generation + 1)


class LabelsFailed(UserError):
    """Every label of a generation failed: the campaign cannot go on (one line, exit 2; the reasons are in
    ``failed_labels.xyz``)."""


def errors(calculator, structures: Sequence[Structure]) -> dict[str, float]:
    """The committee's RMSE of the energy per atom (eV/atom) and of the force components (eV/Å) on labelled
    ``structures``."""
    predicted = calculator.predict(list(structures))
    energy, force = predicted.energy_errors(), predicted.force_errors()
    return {"energy_rmse": float(np.sqrt(np.mean(energy[0] ** 2))), "force_rmse": float(np.sqrt(np.mean(force[0] ** 2)))}


def frame_of(atoms: Atoms) -> Frame:
    info = atoms.info
    return Frame(atoms, info["temperature"], info["trajectory"], info["step"], info["forces_sigma"], info["energy_sigma"])


def write_frames(path: Path, frames: Sequence[Frame], classes: np.ndarray) -> None:
    """The explored frames as extended XYZ, each with its temperature, trajectory, step, σ values and trust class."""
    images = []
    for frame, trust in zip(frames, classes):
        atoms = frame.atoms.copy()
        atoms.info.update({"temperature": frame.temperature, "trajectory": frame.trajectory, "step": frame.step,
                           "forces_sigma": frame.force_sigma, "energy_sigma": frame.energy_sigma, "trust": str(trust)})
        images.append(atoms)
    write_atomically(path, xyz_writer(images))


def xyz_writer(images: Sequence[Atoms]):
    def write(path: Path) -> None:
        from ase.io import write as ase_write

        ase_write(path, list(images), format="extxyz")

    return write


def read_frames(path: Path) -> list[Atoms]:
    from ase.io import read

    if path.stat().st_size == 0:
        return []
    return read(path, index=":", format="extxyz")
