"""The Chebyshev descriptor: ænet's Fortran values, invariances, periodic images, gradients."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase.build import bulk

from aenet_exp.data import Structure, read_structures
from aenet_exp.descriptor import ChebyshevDescriptor, collate_graphs, typespin_weights

PUBLISHED = dict(rad_order=20, rad_cutoff=6.5, ang_order=6, ang_cutoff=5.0)


def structure_from_ase(atoms) -> Structure:
    periodic = bool(atoms.pbc.any())
    return Structure(
        atoms.get_chemical_symbols(),
        atoms.positions,
        cell=atoms.cell.array if periodic else None,
        pbc=atoms.pbc,
    )


def rutile() -> Structure:
    """Rutile TiO2 primitive cell (6 atoms, 4.59 × 4.59 × 2.96 Å: smaller than the cutoffs)."""
    a, c, u = 4.594, 2.959, 0.305
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [1 - u, 1 - u, 0], [0.5 + u, 0.5 - u, 0.5], [0.5 - u, 0.5 + u, 0.5]]
    cell = np.diag([a, a, c])
    return Structure(["Ti", "Ti", "O", "O", "O", "O"], np.array(frac) @ cell, cell=cell, pbc=True)


def triclinic(seed: int = 0) -> Structure:
    rng = np.random.default_rng(seed)
    cell = np.array([[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [-0.8, 1.1, 4.4]])
    frac = rng.random((7, 3))
    species = ["Ti", "O", "O", "Ti", "O", "O", "O"]
    return Structure(species, frac @ cell, cell=cell, pbc=True)


def brute_force_features(structure: Structure, species, rad_order, rad_cutoff, ang_order, ang_cutoff) -> np.ndarray:
    """Plain loops over explicit periodic images: an independent statement of the definition."""
    from numpy.polynomial import chebyshev as C

    def fc(r, rc):
        return 0.5 * (np.cos(np.pi * r / rc) + 1.0) if r < rc else 0.0

    def T(n_max, x):
        return np.array([C.chebval(x, [0] * n + [1]) for n in range(n_max + 1)])

    spin = typespin_weights(len(species)).numpy()
    s_of = {s: spin[k] for k, s in enumerate(species)}
    cutoff = max(rad_cutoff, ang_cutoff)
    cell = structure.cell if structure.cell is not None else np.zeros((3, 3))
    reach = [int(np.ceil(cutoff / np.linalg.norm(cell[k]))) + 2 if structure.pbc[k] else 0 for k in range(3)]
    images = list(itertools.product(*[range(-r, r + 1) for r in reach]))
    out = []
    for i, xi in enumerate(structure.positions):
        neigh = []
        for j, xj in enumerate(structure.positions):
            for img in images:
                v = xj + np.array(img) @ cell - xi
                d = np.linalg.norm(v)
                if d > 1e-12 and d < cutoff:
                    neigh.append((v, d, s_of[structure.species[j]]))
        rad = np.zeros(rad_order + 1)
        wrad = np.zeros(rad_order + 1)
        for v, d, s in neigh:
            if d < rad_cutoff:
                t = T(rad_order, 2 * d / rad_cutoff - 1) * fc(d, rad_cutoff)
                rad += t
                wrad += s * t
        ang = np.zeros(ang_order + 1)
        wang = np.zeros(ang_order + 1)
        close = [n for n in neigh if n[1] < ang_cutoff]
        for (v1, d1, s1), (v2, d2, s2) in itertools.combinations(close, 2):
            t = T(ang_order, v1 @ v2 / (d1 * d2)) * fc(d1, ang_cutoff) * fc(d2, ang_cutoff)
            ang += t
            wang += s1 * s2 * t
        row = [rad, ang, wrad, wang] if len(species) > 1 else [rad, ang]
        out.append(np.concatenate(row))
    return np.array(out)


@pytest.mark.parametrize(
    "structure_file, reference_file, species",
    [
        ("water.xyz", "water_ref.csv", ["O", "H"]),
        ("lmnto_structure001.xsf", "lmnto_ref.csv", ["Li", "Mo", "Ni", "Ti", "O"]),
    ],
)
def test_matches_fortran_reference(data_dir, structure_file, reference_file, species):
    descriptor = ChebyshevDescriptor(
        species=species, rad_order=10, rad_cutoff=4.0, ang_order=3, ang_cutoff=1.5, dtype=torch.float64
    )
    structure = read_structures(data_dir / "chebyshev" / structure_file)[0]
    features = descriptor.featurize(structure)
    reference = np.loadtxt(data_dir / "chebyshev" / reference_file, delimiter=",")
    assert descriptor.n_features == 30
    assert features.shape == reference.shape
    assert np.abs(features.numpy() - reference).max() <= 1e-10


def test_typespin_weights():
    assert typespin_weights(1).tolist() == [0.0]
    assert typespin_weights(2).tolist() == [-1.0, 1.0]
    assert typespin_weights(3).tolist() == [-1.0, 0.0, 1.0]
    assert typespin_weights(4).tolist() == [-2.0, -1.0, 1.0, 2.0]
    assert typespin_weights(5).tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]


@pytest.mark.parametrize("make", [rutile, triclinic], ids=["rutile-small-cell", "triclinic"])
def test_periodic_matches_brute_force_images(make):
    settings = dict(rad_order=8, rad_cutoff=5.0, ang_order=4, ang_cutoff=3.5)
    structure = make()
    features = ChebyshevDescriptor(["Ti", "O"], **settings).featurize(structure).numpy()
    expected = brute_force_features(structure, ["Ti", "O"], **settings)
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-10)


def test_single_species_layout_has_no_weighted_channels():
    atoms = bulk("Cu", "fcc", a=3.6)
    structure = structure_from_ase(atoms)
    settings = dict(rad_order=6, rad_cutoff=4.5, ang_order=3, ang_cutoff=3.0)
    descriptor = ChebyshevDescriptor(["Cu"], **settings)
    assert descriptor.n_features == 7 + 4
    np.testing.assert_allclose(
        descriptor.featurize(structure).numpy(), brute_force_features(structure, ["Cu"], **settings), atol=1e-10
    )


def rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_invariant_to_rotation_translation_and_permutation(data_dir):
    descriptor = ChebyshevDescriptor(["Ti", "O"], **PUBLISHED)
    structure = read_structures(data_dir / "tio2" / "structure0407.xsf")[0]
    reference = descriptor.featurize(structure)

    R = rotation(3)
    moved = Structure(
        structure.species, structure.positions @ R.T + [0.3, -1.7, 2.2], cell=structure.cell @ R.T, pbc=structure.pbc
    )
    torch.testing.assert_close(descriptor.featurize(moved), reference, rtol=0, atol=1e-10)

    order = np.random.default_rng(5).permutation(structure.n_atoms)
    shuffled = Structure(
        [structure.species[k] for k in order], structure.positions[order], cell=structure.cell, pbc=structure.pbc
    )
    torch.testing.assert_close(descriptor.featurize(shuffled), reference[order], rtol=0, atol=1e-10)


def test_molecule_invariant_to_rotation(data_dir):
    descriptor = ChebyshevDescriptor(["C", "H", "O"], rad_order=10, rad_cutoff=4.5, ang_order=5, ang_cutoff=3.5)
    molecule = read_structures(data_dir / "ethanol" / "ethanol5.xyz")[0]
    assert molecule.cell is None
    R = rotation(11)
    turned = Structure(molecule.species, molecule.positions @ R.T - 4.0)
    torch.testing.assert_close(descriptor.featurize(turned), descriptor.featurize(molecule), rtol=0, atol=1e-10)


def test_supercell_has_the_features_of_its_primitive_cell():
    descriptor = ChebyshevDescriptor(["Ti", "O"], **PUBLISHED)
    primitive = rutile()
    atoms = structure_to_ase(primitive).repeat((2, 3, 1))
    supercell = structure_from_ase(atoms)
    features = descriptor.featurize(supercell)
    torch.testing.assert_close(features, descriptor.featurize(primitive).repeat(6, 1), rtol=0, atol=1e-10)


def structure_to_ase(structure: Structure):
    from ase import Atoms

    return Atoms(structure.species, positions=structure.positions, cell=structure.cell, pbc=structure.pbc)


def test_atom_sees_its_own_images():
    cell = np.diag([2.5, 2.5, 2.5])
    lone = Structure(["Ti"], [[0.1, 0.2, 0.3]], cell=cell, pbc=True)
    features = ChebyshevDescriptor(["Ti"], rad_order=4, rad_cutoff=3.0, ang_order=2, ang_cutoff=3.0).featurize(lone)
    fc = 0.5 * (np.cos(np.pi * 2.5 / 3.0) + 1.0)
    assert features[0, 0].item() == pytest.approx(6 * fc, abs=1e-12)  # six images at 2.5 Å


def test_batched_graph_equals_separate_structures(data_dir):
    descriptor = ChebyshevDescriptor(["Ti", "O"], **PUBLISHED)
    structures = read_structures(str(data_dir / "tio2" / "*.xsf"))
    batch = collate_graphs([descriptor.graph(s) for s in structures])
    separate = torch.cat([descriptor.featurize(s) for s in structures])
    torch.testing.assert_close(descriptor(batch), separate, rtol=0, atol=1e-12)
    assert batch.structure.tolist() == sum(([k] * s.n_atoms for k, s in enumerate(structures)), [])


def test_min_cutoff_drops_close_pairs():
    pair = Structure(["O", "H"], [[0, 0, 0], [0, 0, 0.4]])
    args = dict(species=["O", "H"], rad_order=3, rad_cutoff=3.0, ang_order=2, ang_cutoff=2.0)
    assert ChebyshevDescriptor(**args, min_cutoff=0.5).featurize(pair).abs().max() == 0
    assert ChebyshevDescriptor(**args).featurize(pair).abs().max() > 0


def test_float32_follows_dtype(data_dir):
    structure = read_structures(data_dir / "tio2" / "structure0407.xsf")[0]
    f32 = ChebyshevDescriptor(["Ti", "O"], **PUBLISHED, dtype=torch.float32).featurize(structure)
    f64 = ChebyshevDescriptor(["Ti", "O"], **PUBLISHED).featurize(structure)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), f64, rtol=1e-5, atol=1e-4)


def test_unknown_species_is_named():
    with pytest.raises(ValueError, match=r"\['Zr'\]"):
        ChebyshevDescriptor(["Ti", "O"], **PUBLISHED).featurize(Structure(["Ti", "Zr"], [[0, 0, 0], [2, 0, 0]]))


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(rad_order=0), "rad_order"),
        (dict(ang_cutoff=-1.0), "ang_cutoff"),
        (dict(species=["O", "O"]), "species"),
        (dict(min_cutoff=6.0), "min_cutoff"),
    ],
)
def test_bad_settings_are_refused(override, message):
    args = dict(species=["Ti", "O"], **PUBLISHED) | override
    with pytest.raises(ValueError, match=message):
        ChebyshevDescriptor(**args)


def test_gradcheck_positions_and_cell():
    structure = triclinic(2)
    descriptor = ChebyshevDescriptor(["Ti", "O"], rad_order=5, rad_cutoff=3.5, ang_order=3, ang_cutoff=3.0)
    positions = torch.tensor(structure.positions, requires_grad=True)
    cell = torch.tensor(structure.cell, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, c: descriptor.featurize(structure, p, c), (positions, cell))

