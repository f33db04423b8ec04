"""ænet's network files: write a :class:`Potential` as ``<X>.pytorch.nn.ascii`` files, read them back.

One file per species, in the text form aenet-PyTorch writes and ænet's ``nnASCII2bin.x`` converts
into the binary ``.nn`` files that ``predict.x``, the LAMMPS and the ASE interfaces load. Every
field is a Fortran list-directed record, in three sections: the network (layer sizes, activation
codes, weights), the fingerprint setup (Chebyshev basis, feature statistics) and the training-set
info (energy scale and shift, atomic reference energies). ænet evaluates an atom of species ``s``
as ``E_i = net_s((f − avg) / sqrt(cov − avg²)) / scale + shift + E_atom[s]``.
Field by field, and what cannot be represented: docs/aenet_format.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from aenet_exp.data import DataError
from aenet_exp.descriptor import ChebyshevDescriptor
from aenet_exp.files import write_atomically
from aenet_exp.model import Potential
from aenet_exp.model.networks import linear_layers

SUFFIX = ".pytorch.nn.ascii"
ACTIVATION_CODES = {"linear": 0, "tanh": 1, "sigmoid": 2, "mtanh": 3, "twist": 4}  # ænet's feedforward.f90
NOT_IN_AENET = {"relu": "ænet has no ReLU"}
NSFPARAM = 4  # parameters per basis function; the Chebyshev basis uses the first column only
NENV_MAX = 2  # environment species per basis function in ænet's sfenv(2, nsf)
TYPELEN = 2  # ænet stores species symbols in two characters
DEFAULT_RMIN = 0.5  # Å, ænet's minimal interatomic distance when the descriptor has no min_cutoff
ZERO_SCALE = 1e-10  # ænet's stp_normalize: a feature std at or below this gets scale 0
DESCRIPTION = "Chebyshev_basis_written_by_aenet_exp"  # one token: nnASCII2bin keeps the first word only


class Layout(NamedTuple):
    """ænet's bookkeeping of a network with ``nnodes`` nodes per layer (bias nodes not counted)."""

    nnodes_max: int
    wsize: int  # weights and biases in all layers
    nvalues: int  # node values, bias nodes included
    iw: list[int]  # index of the last weight of each layer (0 for the input layer)
    iv: list[int]  # index of the last node value of each layer, bias included (0 for the input layer)


def layout(nnodes: Sequence[int]) -> Layout:
    """The :class:`Layout` ænet derives from the layer sizes ``nnodes`` (input, hidden..., output)."""
    iw, iv = [0], [0]
    for n_in, n_out in zip(nnodes[:-1], nnodes[1:]):
        iw.append(iw[-1] + (n_in + 1) * n_out)
        iv.append(iv[-1] + n_in + 1)
    return Layout(max(nnodes), iw[-1], iv[-1] + nnodes[-1], iw, iv)


# ---------------------------------------------------------------------------------------- writing


def array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().cpu().numpy()


def ints(values) -> str:
    return " ".join(f"{int(v):17d}" for v in values)


def reals(values) -> str:
    """17 significant digits: every float64 reads back bit for bit."""
    return " ".join(f"{float(v):24.16E}" for v in values)


def check_exportable(potential: Potential) -> None:
    """Raise ValueError naming what of ``potential`` ænet cannot represent."""
    for symbol in potential.species:
        if len(symbol) > TYPELEN:
            raise ValueError(f"species {symbol!r}: ænet stores species symbols in {TYPELEN} characters")
        for name in potential.architecture["activations"][symbol]:
            if name not in ACTIVATION_CODES:
                raise ValueError(
                    f"activation {name!r} of species {symbol} has no ænet code ({NOT_IN_AENET.get(name, 'not in ænet')}); "
                    f"exportable: {sorted(ACTIVATION_CODES)}"
                )
    check_cutoffs(potential.descriptor.settings(), potential.descriptor.multi_species)
    if not all(torch.isfinite(t).all() for t in [*potential.parameters(), *potential.buffers()]):
        raise ValueError("the potential has NaN or infinite weights or normalisation values")


def check_cutoffs(basis: dict, multi_species: bool) -> None:
    """ænet's sfbasis.f90 updates a neighbour's typespin only inside the radial cutoff, so with
    several species and ``ang_cutoff > rad_cutoff`` its weighted angular features differ from ours."""
    if multi_species and basis["ang_cutoff"] > basis["rad_cutoff"]:
        raise ValueError(
            f"ang_cutoff {basis['ang_cutoff']} Å > rad_cutoff {basis['rad_cutoff']} Å: with several species "
            "ænet computes different weighted angular features for such a basis"
        )


def warn_imprecise_std(mean: np.ndarray, std: np.ndarray) -> None:
    """Warn when ænet's ``sqrt(cov − avg²)``, with ``cov = std² + mean²``, does not give ``std`` back."""
    recovered = np.sqrt(np.maximum((std**2 + mean**2) - mean * mean, 0.0))
    bad = (np.abs(recovered - std) > 1e-8 * std) | (recovered <= ZERO_SCALE)
    if bad.any():
        warnings.warn(
            f"features {np.flatnonzero(bad).tolist()}: std is too small against the mean for ænet's "
            "E[x²] statistics; ænet will scale these features differently",
            stacklevel=3,
        )


def network_lines(potential: Potential, symbol: str) -> list[str]:
    """Network section: nlayers, nnodes_max, Wsize, nvalues, nnodes, activation codes, iw, iv, W."""
    layers = linear_layers(potential.networks.nets[symbol])
    nnodes = [layers[0].in_features, *(layer.out_features for layer in layers)]
    codes = [ACTIVATION_CODES[a] for a in potential.architecture["activations"][symbol]] + [0]
    # each layer: the (n_out, n_in + 1) matrix [W | b] in Fortran (column-major) order
    blocks = [
        array(torch.cat([layer.weight[0], layer.bias[0, :, None]], dim=1)).T.reshape(-1) for layer in layers
    ]
    shape = layout(nnodes)
    return [
        ints([len(nnodes)]), ints([shape.nnodes_max]), ints([shape.wsize]), ints([shape.nvalues]),
        ints(nnodes), ints(codes), ints(shape.iw), ints(shape.iv), reals(np.concatenate(blocks)),
    ]  # fmt: skip


def setup_lines(potential: Potential, symbol: str, rmin: float) -> list[str]:
    """Fingerprint setup: description, species, environment, Rc_min/max, basis, feature statistics."""
    d = potential.descriptor
    nsf = d.n_features
    sfparam = np.zeros((nsf, NSFPARAM))  # Fortran sfparam(NSFPARAM, nsf), column-major
    sfparam[0] = [d.rad_cutoff, d.rad_order, d.ang_cutoff, d.ang_order]
    mean, std = array(potential.feature_mean), array(potential.feature_std)
    return [
        DESCRIPTION, symbol, ints([len(d.species)]), " ".join(d.species), reals([rmin]), reals([d.cutoff]),
        "Chebyshev", ints([nsf]), ints([NSFPARAM]), ints([0] * nsf), reals(sfparam.reshape(-1)),
        ints([0] * (NENV_MAX * nsf)), ints([0]),
        reals(mean - std), reals(mean + std), reals(mean), reals(std**2 + mean**2),
    ]  # fmt: skip


def trainset_lines(potential: Potential) -> list[str]:
    """Training-set info: name, normalized, scale, shift, species and E_atom, counts, energy range."""
    shift, scale = float(potential.energy_shift), float(potential.energy_scale)
    normalized = "T" if (shift, scale) != (0.0, 1.0) else "F"
    return [
        "aenet_exp", normalized, reals([1.0 / scale]), reals([shift]), ints([len(potential.species)]),
        " ".join(potential.species), reals(array(potential.atomic_energies)), ints([0]), ints([0]),
        reals([shift - scale, shift + scale, shift]),
    ]  # fmt: skip


def write_aenet_ascii(potential: Potential, directory: str | Path, rmin: float | None = None) -> list[Path]:
    """Write ``<X>.pytorch.nn.ascii`` for every species ``X`` of ``potential`` into ``directory``.

    ``rmin`` (Å): ænet's minimal interatomic distance, which only sizes its neighbour arrays
    (default: the descriptor's ``min_cutoff`` when positive, else 0.5 Å). Raises ValueError,
    before writing anything, for what ænet cannot represent. Each file is written atomically.
    Returns the paths written, in species order.
    """
    check_exportable(potential)
    if rmin is None:
        rmin = potential.descriptor.min_cutoff or DEFAULT_RMIN
    if not 0 < rmin < potential.descriptor.cutoff:
        raise ValueError(f"rmin must be in (0, {potential.descriptor.cutoff}) Å, got {rmin}")
    warn_imprecise_std(array(potential.feature_mean), array(potential.feature_std))
    trainset = trainset_lines(potential)
    texts = {
        symbol: "\n".join(network_lines(potential, symbol) + setup_lines(potential, symbol, rmin) + trainset) + "\n"
        for symbol in potential.species
    }
    paths = []
    for symbol, text in texts.items():
        path = Path(directory) / f"{symbol}{SUFFIX}"
        write_atomically(path, text)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------- reading


class Records:
    """Fortran list-directed reading of a text file: every read starts on a new line and takes as
    many lines as it needs (commas separate values like blanks; blank lines are skipped); values
    left on its last line are skipped. Errors are :class:`DataError` naming file and line."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            raise DataError(path, "expected a text file (ænet's ASCII network format)") from None
        self.next = 0  # index of the next unread line = number of the last line read

    def fail(self, message: str, line: int | None = None) -> None:
        raise DataError(self.path, message, line if line is not None else self.next)

    def line(self, what: str) -> str:
        """The next non-blank line, stripped (a character value)."""
        while self.next < len(self.lines):
            self.next += 1
            if self.lines[self.next - 1].strip():
                return self.lines[self.next - 1].strip()
        self.fail(f"expected {what}, found the end of the file")

    def word(self, what: str) -> str:
        return self.line(what).replace(",", " ").split()[0]

    def values(self, count: int, kind: type, what: str) -> list:
        """``count`` values of ``kind`` (int, float or str) from as many lines as needed."""
        found: list = []
        while len(found) < count:
            text = self.line(f"{count} {what}" if count != 1 else what)
            for token in text.replace(",", " ").split()[: count - len(found)]:
                try:
                    found.append(float(token.replace("D", "E").replace("d", "e")) if kind is float else kind(token))
                except ValueError:
                    noun = "an integer" if kind is int else "a real number"
                    self.fail(f"expected {what} ({noun} each), got {token!r}")
        return found

    def integer(self, what: str, minimum: int = 0) -> int:
        (value,) = self.values(1, int, what)
        if value < minimum:
            self.fail(f"expected {what} >= {minimum}, got {value}")
        return value

    def real(self, what: str) -> float:
        return self.values(1, float, what)[0]

    def logical(self, what: str) -> bool:
        """A Fortran logical: ``T``, ``.true.``, ``True``, ``F``, ``.false.``, ... ."""
        token = self.word(what).lstrip(".")[:1].upper()
        if token not in ("T", "F"):
            self.fail(f"expected {what} (a logical, T or F), got {self.lines[self.next - 1].strip()!r}")
        return token == "T"


@dataclass
class SpeciesFile:
    """What one ``<X>.pytorch.nn.ascii`` file says about its species."""

    path: Path
    species: str
    environment: list[str]
    basis: dict  # rad_cutoff, rad_order, ang_cutoff, ang_order
    layers: list[tuple[np.ndarray, np.ndarray]]  # (weight (n_out, n_in), bias (n_out,)) per layer
    activations: list[str]  # per hidden layer
    feature_mean: np.ndarray  # (nsf,) ænet's sfval_avg
    feature_std: np.ndarray  # (nsf,) sqrt(sfval_cov − sfval_avg²)
    energy_scale: float  # eV per unit of network output: 1 / ænet's scale
    energy_shift: float  # eV/atom
    atomic_energy: float  # eV, E_atom of this species


def read_network(records: Records) -> tuple[list[int], list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """Network section -> layer sizes, hidden activation names, per-layer (weight, bias)."""
    nlayers = records.integer("nlayers (number of layers)", minimum=2)
    header = {name: (records.integer(name), records.next) for name in ("nnodes_max", "Wsize", "nvalues")}
    nnodes = records.values(nlayers, int, "layer sizes (nnodes)")
    if min(nnodes) < 1 or nnodes[-1] != 1:
        records.fail(f"expected positive layer sizes ending in one output node, got {nnodes}")
    shape = layout(nnodes)
    for (name, (value, line)), expected in zip(header.items(), shape[:3]):
        if value != expected:
            records.fail(f"{name} is {value}, but layer sizes {nnodes} give {expected}", line)
    codes = records.values(nlayers - 1, int, "activation codes")
    names = {code: name for name, code in ACTIVATION_CODES.items()}
    for code in codes[:-1]:
        if code not in names:
            records.fail(f"activation code {code} has no aenet_exp activation; expected one of {sorted(names)} "
                         "(0 linear, 1 tanh, 2 sigmoid, 3 mtanh)")  # fmt: skip
    if codes[-1] != 0:
        records.fail(f"expected activation code 0 (linear) for the output layer, got {codes[-1]}")
    for name, expected in (("iw", shape.iw), ("iv", shape.iv)):
        if records.values(nlayers, int, f"{name} indices") != expected:
            records.fail(f"{name} indices differ from {expected}, the ones of layer sizes {nnodes}")
    weights = np.array(records.values(shape.wsize, float, "weights (W)"))
    layers = []
    for n_in, n_out, start, end in zip(nnodes[:-1], nnodes[1:], shape.iw[:-1], shape.iw[1:]):
        block = weights[start:end].reshape(n_in + 1, n_out).T  # Fortran (n_out, n_in + 1) = [W | b]
        layers.append((block[:, :-1], block[:, -1]))
    return nnodes, [names[c] for c in codes[:-1]], layers


def read_setup(records: Records, n_inputs: int) -> tuple[str, list[str], dict, np.ndarray, np.ndarray]:
    """Fingerprint setup -> species, environment species, Chebyshev basis, feature mean and std."""
    records.line("the description")
    species = records.word("the species (atomtype)")
    nenv = records.integer("nenv (number of environment species)", minimum=1)
    environment = records.values(nenv, str, "environment species (envtypes)")
    records.real("Rc_min")
    records.real("Rc_max")
    sftype = records.word("the basis type (sftype)")
    if sftype.lower() != "chebyshev":
        records.fail(f"expected the basis type Chebyshev, got {sftype!r}")
    nsf = records.integer("nsf (number of features)", minimum=1)
    if nsf != n_inputs:
        records.fail(f"nsf is {nsf}, but the network has {n_inputs} inputs")
    nsfparam = records.integer("nsfparam", minimum=NSFPARAM)
    records.values(nsf, int, "basis function kinds (sf)")
    sfparam = records.values(nsfparam * nsf, float, "basis parameters (sfparam)")
    basis = {"rad_cutoff": sfparam[0], "rad_order": round(sfparam[1]),
             "ang_cutoff": sfparam[2], "ang_order": round(sfparam[3])}  # fmt: skip
    expected_nsf = (basis["rad_order"] + basis["ang_order"] + 2) * (2 if nenv > 1 else 1)
    if nsf != expected_nsf:
        records.fail(f"nsf is {nsf}, but radial order {basis['rad_order']} and angular order "
                     f"{basis['ang_order']} with {nenv} species give {expected_nsf}")  # fmt: skip
    records.values(NENV_MAX * nsf, int, "environment indices (sfenv)")
    records.integer("neval")
    for name in ("sfval_min", "sfval_max"):
        records.values(nsf, float, f"feature statistics ({name})")
    mean = np.array(records.values(nsf, float, "feature averages (sfval_avg)"))
    second = np.array(records.values(nsf, float, "feature second moments (sfval_cov)"))
    variance = second - mean * mean
    if (variance < 0).any():
        records.fail(f"sfval_cov < sfval_avg² for features {np.flatnonzero(variance < 0).tolist()} (negative variance)")
    return species, environment, basis, mean, np.sqrt(variance)


def read_trainset(records: Records, species: str) -> tuple[float, float, float]:
    """Training-set info -> (energy scale eV, shift eV/atom, E_atom of ``species`` eV)."""
    records.line("the training set name")
    records.logical("normalized")
    scale = records.real("the energy scaling factor (scale)")
    if scale == 0:
        records.fail("expected a non-zero energy scaling factor (scale)")
    shift = records.real("the energy shift (shift)")
    ntypes = records.integer("ntypes (number of species)", minimum=1)
    names = records.values(ntypes, str, "species names")
    energies = records.values(ntypes, float, "atomic reference energies (E_atom)")
    if species not in names:
        records.fail(f"species {species} has no atomic reference energy among {names}")
    records.integer("natomtot")
    records.integer("nstrucs")
    records.values(3, float, "E_min, E_max, E_avg")
    return 1.0 / scale, shift, energies[names.index(species)]


def read_species_file(path: Path) -> SpeciesFile:
    """Parse one ``<X>.pytorch.nn.ascii`` file (:class:`DataError` naming the line on a bad field)."""
    records = Records(path)
    nnodes, activations, layers = read_network(records)
    species, environment, basis, mean, std = read_setup(records, nnodes[0])
    energy_scale, energy_shift, atomic_energy = read_trainset(records, species)
    return SpeciesFile(
        path, species, environment, basis, layers, activations, mean, std, energy_scale, energy_shift, atomic_energy
    )


def network_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files behind ``source``: a directory (its ``*.pytorch.nn.ascii``), a file, or a list of files."""
    if isinstance(source, (str, Path)):
        source = Path(source)
        if source.is_dir():
            paths = sorted(source.glob(f"*{SUFFIX}"))
            if not paths:
                raise DataError(source, f"no *{SUFFIX} files in this directory")
            return paths
        source = [source]
    paths = [Path(p) for p in source]
    for path in paths:
        if not path.is_file():
            raise DataError(path, "no such file")
    return paths


def files_by_species(files: list[SpeciesFile]) -> dict[str, SpeciesFile]:
    """One file per species of the (common) environment, in environment order; DataError otherwise."""
    first = files[0]
    for f in files:
        for name, mine, theirs in (("species", f.environment, first.environment), ("basis", f.basis, first.basis)):
            if mine != theirs:
                raise DataError(f.path, f"environment {name} {mine} differ from {theirs} in {first.path.name}")
        if (f.energy_scale, f.energy_shift) != (first.energy_scale, first.energy_shift):
            raise DataError(f.path, f"energy scale and shift differ from those in {first.path.name}; aenet_exp "
                                    "has one energy normalisation for all species")  # fmt: skip
    found: dict[str, SpeciesFile] = {}
    for f in files:
        if f.species not in first.environment:
            raise DataError(f.path, f"species {f.species} is not among the environment species {first.environment}")
        if f.species in found:
            raise DataError(f.path, f"a second network for species {f.species} (the first: {found[f.species].path})")
        found[f.species] = f
    missing = [s for s in first.environment if s not in found]
    if missing:
        raise DataError(first.path, f"no network file for species {missing} of the environment {first.environment}")
    return {s: found[s] for s in first.environment}


def load_layers(potential: Potential, symbol: str, f: SpeciesFile, fold_features: bool) -> None:
    """Copy ``f``'s weights into ``symbol``'s network; with ``fold_features`` the file's own feature
    normalisation (ænet's scale ``1/std``, 0 at or below 1e-10) goes into the first layer."""
    layers = list(f.layers)
    if fold_features:
        weight, bias = layers[0]
        kept = f.feature_std > ZERO_SCALE
        folded = weight * np.where(kept, 1.0 / np.where(kept, f.feature_std, 1.0), 0.0)
        layers[0] = (folded, bias - folded @ f.feature_mean)
    with torch.no_grad():
        for module, (weight, bias) in zip(linear_layers(potential.networks.nets[symbol]), layers):
            module.weight[0].copy_(torch.from_numpy(weight))
            module.bias[0].copy_(torch.from_numpy(bias))


def read_aenet_ascii(source: str | Path | Sequence[str | Path]) -> Potential:
    """The float64 :class:`Potential` of ænet network files (a directory of ``*.pytorch.nn.ascii``
    files, one file, or a list), one file per species; it predicts the energies ænet predicts.

    Feature statistics shared by all files become the potential's ``feature_mean``/``feature_std``;
    differing ones (ænet keeps one set per species) are folded into each network's first layer.
    Raises :class:`DataError` naming file and line for a malformed or unrepresentable file.
    """
    files = [read_species_file(path) for path in network_files(source)]
    by_species = files_by_species(files)
    first = files[0]
    try:
        check_cutoffs(first.basis, len(first.environment) > 1)
        descriptor = ChebyshevDescriptor(list(by_species), **first.basis, dtype=torch.float64)
    except ValueError as error:
        raise DataError(first.path, f"unusable Chebyshev basis: {error}") from None
    hidden = {s: [w.shape[0] for w, _ in f.layers[:-1]] for s, f in by_species.items()}
    potential = Potential(descriptor, hidden, {s: f.activations for s, f in by_species.items()})
    shared = all(
        np.array_equal(f.feature_mean, first.feature_mean) and np.array_equal(f.feature_std, first.feature_std)
        for f in files
    ) and bool((first.feature_std > ZERO_SCALE).all())
    for symbol, f in by_species.items():
        load_layers(potential, symbol, f, fold_features=not shared)
    if shared:
        potential.set_normalization(
            feature_mean=torch.from_numpy(first.feature_mean), feature_std=torch.from_numpy(first.feature_std)
        )
    potential.set_normalization(
        energy_shift=first.energy_shift,
        energy_scale=first.energy_scale,
        atomic_energies={s: f.atomic_energy for s, f in by_species.items()},
    )
    return potential.eval()
