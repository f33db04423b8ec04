"""ænet's network format (export/aenet_ascii.py): files ænet reads with the potential's energies, and back;
the export command (export/command.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aenet_exp.data import DataError, read_structures
from aenet_exp.errors import UserError
from aenet_exp.descriptor import ChebyshevDescriptor, collate_graphs
from aenet_exp.export import read_aenet_ascii, write_aenet_ascii
from aenet_exp.model import Potential, energy_and_forces

from helpers import FAST, SMALL, command, run_cli

SPECIES = ["O", "Ti"]


NETWORK_LINES = 9  # nlayers, nnodes_max, Wsize, nvalues, nnodes, codes, iw, iv, W


@pytest.fixture(scope="module")
def structures():
    return [read_structures(path)[0] for path in sorted(SMALL.glob("*.xsf"))[:5]]


def make_potential(structures, hidden, activations, seed=0, **basis) -> Potential:
    """Random float64 weights; feature and energy normalisation far from identity."""
    torch.manual_seed(seed)
    settings = dict(rad_order=6, rad_cutoff=5.0, ang_order=3, ang_cutoff=3.5) | basis
    descriptor = ChebyshevDescriptor(SPECIES, **settings, dtype=torch.float64)
    potential = Potential(descriptor, hidden, activations)
    with torch.no_grad():
        features = descriptor(collate_graphs([descriptor.graph(s) for s in structures]))
        for parameter in potential.networks.parameters():
            parameter.normal_(0.0, 0.4)
    potential.set_normalization(
        feature_mean=features.mean(0) + 0.1,
        feature_std=features.std(0) * 1.3 + 0.05,
        energy_shift=-5.3,
        energy_scale=0.37,
        atomic_energies={"O": -432.5, "Ti": -1604.625},  # exact in float32: set_normalization rounds through it
    )
    return potential.eval()


@pytest.fixture(scope="module")
def potential(structures):
    """Different architectures per species: O two hidden layers, Ti one."""
    return make_potential(structures, {"O": [6, 5], "Ti": [4]}, {"O": ["tanh", "sigmoid"], "Ti": ["mtanh"]})


def batch(potential, structures):
    return collate_graphs([potential.descriptor.graph(s) for s in structures]).to(dtype=torch.float64)


def assert_same_predictions(original, read_back, structures):
    graph = batch(original, structures)
    energy, forces = energy_and_forces(original, graph)
    energy_read, forces_read = energy_and_forces(read_back, graph)
    assert torch.all((energy_read - energy).abs() <= 1e-10 * energy.abs())
    assert (forces_read - forces).abs().max() <= 1e-10 * forces.abs().max()


def aenet_atom_energies(paths, potential, structures) -> np.ndarray:
    """Per-atom energies as ænet computes them from the files' numbers (independent of our reader):
    ``scaled = (f − avg)/sqrt(cov − avg²)``, Fortran-ordered ``[W | b]`` per layer, activation by
    code, ``E_i = out/scale + shift + E_atom``. Features from our descriptor (tested against ænet)."""
    graph = batch(potential, structures)
    with torch.no_grad():
        features = potential.descriptor(graph).numpy()
    activation = {0: lambda x: x, 1: np.tanh, 2: lambda x: 1 / (1 + np.exp(-x)),
                  3: lambda x: 1.7159 * np.tanh(0.666666666666667 * x)}  # fmt: skip
    energies = np.zeros(len(features))
    for path in paths:
        lines = [line.split() for line in path.read_text().splitlines()]
        nnodes, codes, iw = ([int(v) for v in lines[i]] for i in (4, 5, 6))
        weights = np.array(lines[8], float)
        setup, trainset = lines[NETWORK_LINES : NETWORK_LINES + 17], lines[NETWORK_LINES + 17 :]
        symbol, avg, cov = setup[1][0], np.array(setup[15], float), np.array(setup[16], float)
        scale, shift = float(trainset[2][0]), float(trainset[3][0])
        e_atom = dict(zip(trainset[5], map(float, trainset[6])))[symbol]
        atoms = (graph.species == SPECIES.index(symbol)).numpy()
        values = (features[atoms] - avg) / np.sqrt(cov - avg * avg)
        for layer in range(len(nnodes) - 1):
            matrix = weights[iw[layer] : iw[layer + 1]].reshape(nnodes[layer + 1], nnodes[layer] + 1, order="F")
            values = activation[codes[layer]](values @ matrix[:, :-1].T + matrix[:, -1])
        energies[atoms] = values[:, 0] / scale + shift + e_atom
    return energies


def test_files_give_ænet_the_potentials_energies(potential, structures, tmp_path):
    paths = write_aenet_ascii(potential, tmp_path)
    assert [p.name for p in paths] == ["O.pytorch.nn.ascii", "Ti.pytorch.nn.ascii"]
    graph = batch(potential, structures)
    with torch.no_grad():
        expected = potential.atom_energies(potential.descriptor(graph), graph.species).numpy()
    assert np.abs(aenet_atom_energies(paths, potential, structures) - expected).max() <= 1e-10 * np.abs(expected).max()


def test_read_back_predicts_the_same_energies_and_forces(potential, structures, tmp_path):
    read_back = read_aenet_ascii(write_aenet_ascii(potential, tmp_path))
    assert read_back.architecture == potential.architecture  # per-species layer sizes and activations
    assert read_back.descriptor.settings() == potential.descriptor.settings()
    assert torch.equal(read_back.feature_mean, potential.feature_mean)
    assert torch.allclose(read_back.feature_std, potential.feature_std, rtol=1e-13, atol=0)
    assert torch.equal(read_back.atomic_energies, potential.atomic_energies)
    assert_same_predictions(potential, read_back, structures)


@pytest.mark.parametrize("name", ["linear", "tanh", "sigmoid", "mtanh", "twist"])
def test_every_activation_ænet_has_round_trips(structures, tmp_path, name):
    original = make_potential(structures, {"O": [5, 3], "Ti": [4]}, {"O": [name, "tanh"], "Ti": [name]}, seed=1)
    read_back = read_aenet_ascii(write_aenet_ascii(original, tmp_path))
    assert read_back.architecture == original.architecture
    assert_same_predictions(original, read_back, structures[:2])


def test_header_fields(potential, tmp_path):
    write_aenet_ascii(potential, tmp_path)
    lines = (tmp_path / "O.pytorch.nn.ascii").read_text().splitlines()
    fields = [line.split() for line in lines]
    nsf = potential.descriptor.n_features  # 2 × (7 radial + 4 angular) = 22
    assert nsf == 22
    assert fields[:8] == [
        ["4"], ["22"], [str(23 * 6 + 7 * 5 + 6 * 1)], [str(23 + 7 + 6 + 1)],
        ["22", "6", "5", "1"], ["1", "2", "0"], ["0", "138", "173", "179"], ["0", "23", "30", "36"],
    ]  # fmt: skip
    assert len(fields[8]) == 179
    setup = fields[NETWORK_LINES:]
    assert setup[1] == ["O"] and setup[2] == ["2"] and setup[3] == ["O", "Ti"]
    assert float(setup[4][0]) == 0.5 and float(setup[5][0]) == 5.0  # Rc_min (default), Rc_max
    assert setup[6] == ["Chebyshev"] and setup[7] == ["22"] and setup[8] == ["4"]
    assert [float(v) for v in setup[10][:5]] == [5.0, 6.0, 3.5, 3.0, 0.0]  # sfparam(:, 1)
    assert len(setup[10]) == 4 * 22 and len(setup[11]) == 2 * 22
    mean, std = potential.feature_mean.numpy(), potential.feature_std.numpy()
    assert np.array_equal(np.array(setup[15], float), mean)
    assert np.array_equal(np.array(setup[16], float), std**2 + mean**2)  # ænet's E[x²]
    assert lines[-10:] == [
        "aenet_exp", "T", f"{1 / 0.37:24.16E}", f"{-5.3:24.16E}", f"{2:17d}", "O Ti",
        f"{-432.5:24.16E} {-1604.625:24.16E}", f"{0:17d}", f"{0:17d}",
        f"{-5.3 - 0.37:24.16E} {-5.3 + 0.37:24.16E} {-5.3:24.16E}",
    ]  # fmt: skip
    assert lines[NETWORK_LINES] == "Chebyshev_basis_written_by_aenet_exp"  # description


@pytest.mark.parametrize(
    "activations, message",
    [({"O": ["relu"], "Ti": ["tanh"]}, "activation 'relu' of species O has no ænet code")],
)  # fmt: skip
def test_activations_ænet_lacks_are_refused(structures, tmp_path, activations, message):
    unsupported = make_potential(structures, {"O": [3], "Ti": [3]}, activations)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        write_aenet_ascii(unsupported, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_angular_cutoff_beyond_radial_is_refused(structures, tmp_path):
    wide = make_potential(structures, {"O": [3], "Ti": [3]}, {"O": ["tanh"], "Ti": ["tanh"]}, rad_cutoff=3.0, ang_cutoff=3.5)
    with pytest.raises(ValueError, match="ang_cutoff 3.5 Å > rad_cutoff 3.0 Å"):
        write_aenet_ascii(wide, tmp_path)


def test_per_species_feature_statistics_are_folded_into_the_networks(structures, tmp_path):
    """ænet keeps feature statistics per species: O's file from one potential, Ti's from another."""
    first = make_potential(structures, {"O": [4], "Ti": [4]}, {"O": ["tanh"], "Ti": ["tanh"]}, seed=2)
    second = make_potential(structures, {"O": [4], "Ti": [4]}, {"O": ["tanh"], "Ti": ["tanh"]}, seed=3)
    second.set_normalization(feature_mean=second.feature_mean * 0.5, feature_std=second.feature_std * 2.0)
    o_file = write_aenet_ascii(first, tmp_path / "first")[0]
    ti_file = write_aenet_ascii(second, tmp_path / "second")[1]
    mixed = read_aenet_ascii([o_file, ti_file])
    graph = batch(first, structures)
    with torch.no_grad():
        got = [p.atom_energies(p.descriptor(graph), graph.species) for p in (mixed, first, second)]
    oxygen = graph.species == 0
    expected = torch.where(oxygen, got[1], got[2])
    assert (got[0] - expected).abs().max() <= 1e-10 * expected.abs().max()


def test_feature_ænet_cannot_scale_is_dropped_as_ænet_drops_it(potential, structures, tmp_path):
    """sfval_cov = sfval_avg²: ænet's std is 0 (≤ 1e-10), and it multiplies that feature by 0."""
    path = write_aenet_ascii(potential, tmp_path)[0]
    lines = path.read_text().splitlines()
    avg = np.array(lines[NETWORK_LINES + 15].split(), float)
    cov = np.array(lines[NETWORK_LINES + 16].split(), float)
    cov[3] = avg[3] * avg[3]
    lines[NETWORK_LINES + 16] = " ".join(f"{v:24.16E}" for v in cov)
    path.write_text("\n".join(lines) + "\n")
    read_back = read_aenet_ascii(tmp_path)
    expected = Potential.from_settings(potential.settings()).eval()
    expected.load_state_dict(potential.state_dict())
    with torch.no_grad():
        expected.networks.nets["O"][0].weight[0, :, 3] = 0.0
    assert_same_predictions(expected, read_back, structures)


def test_std_lost_in_ænets_statistics_warns(potential, tmp_path):
    imprecise = Potential.from_settings(potential.settings())
    imprecise.load_state_dict(potential.state_dict())
    imprecise.feature_mean[5], imprecise.feature_std[5] = 1e3, 1e-6
    with pytest.warns(UserWarning, match=r"features \[5\]: std is too small against the mean"):
        write_aenet_ascii(imprecise, tmp_path)


@pytest.mark.parametrize(
    "edit, line, message",
    [(lambda lines: lines.__setitem__(5, "  1  tanh  0"), 6, "expected activation codes (an integer each), got 'tanh'"),
     (lambda lines: lines.__setitem__(1, "  99"), 2, "nnodes_max is 99, but layer sizes [22, 6, 5, 1] give 22"),
     (lambda lines: lines.__setitem__(15, "Behler2011"), 16, "expected the basis type Chebyshev, got 'Behler2011'"),
     (lambda lines: lines.__delitem__(slice(28, None)), 28, "expected the energy scaling factor (scale), found the end")],
    ids=["word-for-integer", "inconsistent-header", "other-basis", "truncated"],
)  # fmt: skip
def test_malformed_file_names_file_and_line(potential, tmp_path, edit, line, message):
    path = write_aenet_ascii(potential, tmp_path)[0]
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        read_aenet_ascii(tmp_path)
    assert str(error.value).startswith(f"{path}, line {line}: {message}")


def test_fields_spread_over_lines_read_as_fortran_does(potential, structures, tmp_path):
    """List-directed records: a field may continue on following lines (4 values per line here, as
    ænet's own ASCII writers do) and commas separate values like blanks."""
    for path in write_aenet_ascii(potential, tmp_path):
        wrapped = []
        for line in path.read_text().splitlines():
            values = line.split()
            wrapped += [", ".join(values[i : i + 4]) for i in range(0, len(values), 4)] if len(values) > 4 else [line]
        path.write_text("\n".join(wrapped) + "\n")
    assert_same_predictions(potential, read_aenet_ascii(tmp_path), structures[:2])


def test_missing_species_file_is_named(potential, tmp_path):
    write_aenet_ascii(potential, tmp_path)[1].unlink()
    with pytest.raises(DataError, match=r"no network file for species \['Ti'\]"):
        read_aenet_ascii(tmp_path)


# python -m aenet_exp export (export/command.py), as a user runs it


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = run_cli("train", *FAST, "tracking.enabled=false", f"hydra.run.dir={run_dir}", cwd=run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.mark.slow
def test_cli_exports_a_trained_run(trained_run, structures):
    result = run_cli("export", f"run={trained_run}", "format=aenet", cwd=trained_run)
    assert result.returncode == 0, result.stderr
    written = [trained_run / "aenet" / f"{s}.pytorch.nn.ascii" for s in SPECIES]
    assert result.stdout.split() == [str(p) for p in written]
    trained = Potential.load(trained_run / "potential.pt").astype(torch.float64).eval()
    assert_same_predictions(trained, read_aenet_ascii(trained_run / "aenet"), structures)


@pytest.mark.slow
def test_cli_refuses_an_unknown_format(trained_run):
    result = run_cli("export", f"run={trained_run}", "format=lammps", cwd=trained_run)
    assert result.returncode == 2
    assert result.stderr.strip() == "aenet_exp: error: format: expected one of ['aenet'], got 'lammps'"



def test_a_committee_exports_one_potential_per_member_and_how_to_combine_them(structures, tmp_path):
    single = make_potential(structures, {"O": [6, 5], "Ti": [4]}, {"O": ["tanh", "sigmoid"], "Ti": ["mtanh"]})
    committee = Potential(single.descriptor, single.architecture["hidden"], single.architecture["activations"],
                          members=3, seeds=[1, 2, 3])
    committee.load_state_dict({**single.state_dict(), **{k: v for k, v in committee.state_dict().items()
                                                         if k.startswith("networks.")}, "sigma_scale": torch.tensor([1.5, 2.5])})
    committee.eval()
    written = command("export", [f"run={save(committee, tmp_path)}", f"out={tmp_path / 'aenet'}"])
    assert [p.relative_to(tmp_path / "aenet").as_posix() for p in written] == [
        f"member_{k:03d}/{s}.pytorch.nn.ascii" for k in range(3) for s in SPECIES] + ["committee.json"]
    recipe = json.loads((tmp_path / "aenet" / "committee.json").read_text())
    assert recipe["members"] == ["member_000", "member_001", "member_002"]
    assert recipe["sigma_scale"] == {"energy": 1.5, "forces": 2.5}
    read_back = [read_aenet_ascii(tmp_path / "aenet" / name) for name in recipe["members"]]
    for k, member in enumerate(read_back):
        assert_same_predictions(committee.member(k), member, structures)
    graph = batch(committee, structures)
    mean = torch.stack([energy_and_forces(member, graph)[0] for member in read_back]).mean(0)
    torch.testing.assert_close(mean, energy_and_forces(committee, graph)[0], rtol=1e-10, atol=0)


def save(potential: Potential, directory: Path) -> Path:
    path = directory / "potential.pt"
    potential.save(path)
    return path


def committee_of(structures, members: int) -> Potential:
    """An untrained committee of ``members`` (export needs no training)."""
    single = make_potential(structures, {"O": [4], "Ti": [4]}, {"O": ["tanh"], "Ti": ["tanh"]})
    return Potential(single.descriptor, single.architecture["hidden"], single.architecture["activations"],
                     members=members, seeds=list(range(members)))


def test_a_smaller_committees_export_replaces_a_larger_ones_whole(structures, tmp_path):
    out = tmp_path / "aenet"
    for members in (4, 2):
        (tmp_path / f"c{members}").mkdir()
        command("export", [f"run={save(committee_of(structures, members), tmp_path / f'c{members}')}", f"out={out}"])
    assert sorted(path.name for path in out.iterdir()) == ["committee.json", "member_000", "member_001"]
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_a_folder_holding_other_files_than_an_export_is_refused(structures, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(UserError, match=rf"^out: {out} holds files an export does not write \(notes.txt\)"):
        command("export", [f"run={save(committee_of(structures, 2), tmp_path)}", f"out={out}"])
    assert [path.name for path in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("out, message", [
    ("{tmp}/a_file", "a_file is a file; give a directory"),
    ("{tmp}/a_file/aenet", "a_file is a file, not a directory"),
    ("/proc/aenet_exp", "cannot write in /proc"),
])
def test_out_is_checked_before_the_model_is_read(tmp_path, out, message):
    """The model does not exist: were it read first, its error would come first."""
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match=f"^out: .*{message}"):
        command("export", [f"run={tmp_path / 'missing.pt'}", f"out={out.format(tmp=tmp_path)}"])
    assert [path.name for path in tmp_path.iterdir()] == ["a_file"]
