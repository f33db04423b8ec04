"""The campaign loop with a stand-in trainer (a fresh committee per generation): stages, stopping rules, labels never
paid twice, and a campaign interrupted in any stage ending with the labels of an uninterrupted one."""

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import read

from aenet_exp.calculator import Calculator
from aenet_exp.descriptor import ChebyshevDescriptor
from aenet_exp.learning import campaign as campaign_module
from aenet_exp.learning.campaign import STATE_FILE, Campaign, LabelsFailed, Plan, Selection, State
from aenet_exp.learning.explore import Exploration
from aenet_exp.learning.labels import atoms_key
from aenet_exp.learning.oracles import Label, Oracle, label_all
from aenet_exp.learning.trust import TrustWindow
from aenet_exp.model import Potential

EXPLORATION = Exploration("md", (300.0, 900.0), steps=10, timestep=2.0, friction=0.02, trajectories=1, every=5, patience=3)


class Interrupt(Exception):
    pass


class StandIn:
    """Trains nothing: generation g's committee is an untrained one drawn from seed g; can be told to fail once."""

    def __init__(self, fail_at: tuple[str, int] | None = None):
        self.fail_at, self.calls = fail_at, []

    def check(self, stage: str, generation: int) -> None:
        if self.fail_at == (stage, generation):
            self.fail_at = None
            raise Interrupt(stage)

    def train(self, generation: int, run_dir: Path, labelled: Path | None, previous: Path | None) -> Path:
        self.check("train", generation)
        self.calls.append((generation, labelled is not None, previous is not None))
        torch.manual_seed(generation)
        descriptor = ChebyshevDescriptor(["Cu"], rad_order=4, rad_cutoff=4.0, ang_order=2, ang_cutoff=3.0, dtype=torch.float64)
        potential = Potential(descriptor, {"Cu": [4]}, {"Cu": ["tanh"]}, members=3, seeds=[generation + k for k in range(3)])
        potential.set_normalization(feature_std=torch.full((descriptor.n_features,), 10.0), energy_scale=0.05)
        run_dir.mkdir(parents=True, exist_ok=True)
        potential.save(run_dir / "potential.pt")
        return run_dir / "potential.pt"

    def load(self, path: Path):
        self.check("load", int(path.parent.parent.name))
        potential = Potential.load(path)
        return Calculator(potential), potential.descriptor


def campaign(directory, stand_in, oracle=Oracle("emt"), window=TrustWindow(0.0, 1e6), generations=3, budget=None,
             converged=0.99, max_per_generation=2):
    plan = Plan(generations=generations, labels_budget=budget, converged=converged, warm_start=True, seed=5)
    return Campaign(directory, plan, EXPLORATION, Selection("forces", window, max_per_generation, "farthest_point"), oracle,
                    [bulk("Cu", "fcc", a=3.6, cubic=True)], stand_in.train, stand_in.load, say=lambda line: None)


def label_keys(directory: Path) -> list[str]:
    return [image.info["label_key"] for image in read(directory / "labels.xyz", index=":")]


def test_generations_train_explore_select_and_label(tmp_path):
    stand_in = StandIn()
    state = campaign(tmp_path, stand_in).run()
    assert state.finished and "the last of campaign.generations=3" in state.reason and state.generation == 2
    # gen 0 from the seed data alone; gen 1 and 2 with labels, warm-started from the one before
    assert stand_in.calls == [(0, False, False), (1, True, True), (2, True, True)]
    keys = label_keys(tmp_path)
    assert len(keys) == 4 and len(set(keys)) == 4  # 2 per labelling generation, none twice
    for g in (0, 1):
        selected = read(tmp_path / "generations" / f"{g:03d}" / "selected.xyz", index=":")
        assert [atoms_key(a) for a in selected] == keys[2 * g: 2 * g + 2]
        explored = read(tmp_path / "generations" / f"{g:03d}" / "explored.xyz", index=":")
        assert len(explored) == 4 and {a.info["temperature"] for a in explored} == {300.0, 900.0}
    history = State.load(tmp_path).generations
    assert history["0"]["campaign/candidate_fraction"] == 1.0 and history["0"]["campaign/selected"] == 2
    # labels a generation trained on, and those it added: one meaning per metric
    assert [history[g]["campaign/labels"] for g in ("0", "1", "2")] == [0, 2, 4]
    assert history["1"]["campaign/new_labels"] == 2 and history["1"]["campaign/failed_labels"] == 0
    assert "campaign/new/force_rmse" in history["1"]
    assert history["0"]["campaign/T900/candidate_fraction"] == 1.0
    assert (tmp_path / "potential.pt").is_file()


def test_a_campaign_stops_when_converged_or_out_of_budget(tmp_path):
    state = campaign(tmp_path / "converged", StandIn(), window=TrustWindow(1e6, 2e6)).run()
    assert state.generation == 0 and state.reason.startswith("converged: 100.0%")
    state = campaign(tmp_path / "budget", StandIn(), generations=10, budget=3).run()
    assert state.reason == "the label budget campaign.labels_budget=3 is spent"
    assert len(label_keys(tmp_path / "budget")) == 3


def test_a_generation_without_new_candidates_ends_the_campaign_saying_why(tmp_path):
    """Every frame above trust_high (failed): nothing to label, so retraining on the same labels is not attempted."""
    stand_in = StandIn()
    state = campaign(tmp_path, stand_in, window=TrustWindow(1e-12, 2e-12), generations=5).run()
    assert state.finished and state.generation == 0 and state.reason.startswith("no new candidates in generation 0")
    assert stand_in.calls == [(0, False, False)] and (tmp_path / "potential.pt").is_file()


@pytest.mark.slow  # fault injection: a campaign stopped at each stage, and one run straight
@pytest.mark.parametrize("fail_at", [("train", 1), ("load", 0), ("load", 1), ("train", 2)],
                         ids=["training", "exploring", "selecting-or-labelling", "last-training"])
def test_an_interrupted_campaign_resumes_to_the_same_labels(tmp_path, fail_at):
    uninterrupted = tmp_path / "straight"
    campaign(uninterrupted, StandIn()).run()
    stopped = tmp_path / "stopped"
    stand_in = StandIn(fail_at)
    with pytest.raises(Interrupt):
        campaign(stopped, stand_in).run()
    assert not State.load(stopped).finished
    state = campaign(stopped, stand_in).run()  # a new process: state from campaign.json
    assert state.finished and label_keys(stopped) == label_keys(uninterrupted)


def test_labels_stored_before_a_stop_are_not_sent_again(tmp_path, monkeypatch):
    """A generation whose labelling was cut short after its first label sends only the rest."""
    first = campaign(tmp_path, StandIn(), generations=2)
    first._train(0), first._explore(0), first._select(0)
    selected = read(tmp_path / "generations" / "000" / "selected.xyz", index=":")
    first.store.add(selected[0], Label(-1.0, np.zeros((len(selected[0]), 3))), {"generation": 0})
    sent = []

    def counting(oracle, structures, on_label, on_failure):
        sent.append([atoms_key(a) for a in structures])
        return label_all(oracle, structures, on_label, on_failure)

    monkeypatch.setattr(campaign_module, "label_all", counting)
    campaign(tmp_path, StandIn(), generations=2).run()
    assert sent == [[atoms_key(selected[1])]]


def test_a_generation_whose_every_label_failed_stops_the_campaign(tmp_path):
    oracle = Oracle("command", command="false {input} {output}")
    with pytest.raises(LabelsFailed, match="every label of generation 0 failed"):
        campaign(tmp_path, StandIn(), oracle=oracle).run()
    assert len(read(tmp_path / "failed_labels.xyz", index=":")) == 2
    assert (tmp_path / STATE_FILE).is_file()
