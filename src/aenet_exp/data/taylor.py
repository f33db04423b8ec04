"""Taylor-expanded children of structures with forces (``augment=taylor``).

Cooper, Kästner, Urban, Artrith, npj Comput. Mater. 6, 54 (2020): a structure whose DFT forces are known
yields, to first order, the energies of slightly displaced copies of itself. A child is its parent with
every atom displaced by a random ``δ`` (Å), labelled with the energy ``E − Σ_atoms δ·F`` (eV; ``F`` the
parent's forces, eV/Å) and no forces: an energy-only structure.

``δ`` has every Cartesian component drawn from a Gaussian of mean 0 and standard deviation
``displacement`` (Å): ``displacement`` is the RMS of the displacement *per Cartesian component* (the
RMS length of an atom's displacement vector is √3 times it). The children of a parent are drawn from a
generator seeded with ``(seed, key)``, ``key`` the parent's position among the data's structures in
reading order (before any filter or split), so a parent has the same children whichever path reads it
(files in memory, or an HDF5 database) and whichever other structures are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from aenet_exp.data.structure import Structure
from aenet_exp.errors import ConfigError, warn

METHOD = "taylor"


@dataclass(frozen=True)
class Child:
    """A Taylor child and where it comes from."""

    structure: Structure  # the displaced copy: energy, no forces
    parent: int  # key of the parent: its position among the data's structures in reading order
    index: int  # which of the parent's children, 0 … children − 1
    displacement_rms: float  # Å, RMS of this child's δ over its 3·n_atoms components


@dataclass(frozen=True)
class TaylorExpansion:
    """How children are made: ``children`` per parent with forces, each displaced by Gaussian components of
    standard deviation ``displacement`` (Å), drawn from generators seeded by ``seed`` and the parent's key."""

    children: int
    displacement: float  # Å, RMS per Cartesian component
    seed: int

    def children_of(self, parent: Structure, key: int) -> list[Child]:
        """The children of ``parent`` (none without forces or energy); ``key``: its position in reading order."""
        if parent.forces is None or parent.energy is None:
            return []
        rng = np.random.default_rng([self.seed, key])
        deltas = rng.normal(0.0, self.displacement, size=(self.children, parent.n_atoms, 3))
        return [Child(taylor_child(parent, delta), key, k, float(np.sqrt(np.mean(delta**2))))
                for k, delta in enumerate(deltas)]

    def interleaved(self, structures: Iterable[Structure]) -> Iterator[Structure | Child]:
        """Each of ``structures`` followed by its children, read once (what a database build streams)."""
        for key, structure in enumerate(structures):
            yield structure
            yield from self.children_of(structure, key)

    def attributes(self) -> dict[str, object]:
        """What a database built with these children records about them (root attributes)."""
        return {"augment": METHOD, "augment_children": self.children, "augment_displacement": self.displacement,
                "augment_seed": self.seed}

    @classmethod
    def of_attributes(cls, attributes) -> TaylorExpansion | None:
        """The expansion a database's root ``attributes`` record, None when it holds no children."""
        if attributes.get("augment") != METHOD:
            return None
        return cls(int(attributes["augment_children"]), float(attributes["augment_displacement"]),
                   int(attributes["augment_seed"]))


def taylor_child(parent: Structure, delta: np.ndarray) -> Structure:
    """``parent`` displaced by ``delta`` ((n_atoms, 3), Å), energy ``E − Σ δ·F`` (eV), no forces."""
    energy = parent.energy - float(np.sum(delta * parent.forces))
    return Structure(parent.species, parent.positions + delta, parent.cell, parent.pbc, energy, None,
                     parent.source, parent.frame)


def check_parents(candidates: int, children: int, per_parent: int, what: str) -> None:
    """ConfigError naming ``augment`` when none of the ``candidates`` structures (``what``: how to call them) got
    children; a warning naming how many have no forces (so no children) when only some did."""
    parents = children // per_parent
    if parents == 0:
        raise ConfigError("augment", f"is taylor, but none of the {candidates} {what} has forces: Taylor children "
                                     "need their parent's forces; use augment=none, or data with forces")
    if parents < candidates:
        warn(f"augment: {candidates - parents} of {candidates} {what} have no forces and get no Taylor children")
