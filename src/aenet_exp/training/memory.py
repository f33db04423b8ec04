"""What a setting needs of memory, estimated before anything is allocated, and refused when it cannot fit.

The estimates are coarse (within a factor of a few) but cheap: a batch's pair and triplet terms
from the data's atom density, the features, and the networks with their gradients and optimiser
state. A setting whose estimate exceeds the machine's memory is refused naming its key; one
within it proceeds (the estimate is no promise that it fits beside everything else).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from aenet_exp.data import Structure
from aenet_exp.errors import ConfigError

SAMPLED_STRUCTURES = 64  # structures whose density is looked at
# Floats kept per radial term of a pair and per angular term of a triplet by the descriptor's forward
# pass (the recurrence, the cutoff product, the weighted copy), twice with autograd for forces.
FLOATS_PER_TERM = 4
ARRAYS_PER_WEIGHT = 4  # the weight, its gradient, and two optimiser moments (Adam)
PAIR_LIST_BYTES = 48  # a pair's centre, neighbour (int64), cell shift (3 × int64) and distance (float64)
KALMAN_FLOAT_BYTES = 8  # the Kalman filter's covariance is float64 whatever the weights' precision
STRUCTURE_BYTES = 1000  # a structure's Python objects besides its arrays (species list, cell, labels)


class Need(NamedTuple):
    key: str  # the config key that drives it
    bytes: float
    what: str
    remedy: str = "choose a smaller value (or smaller batches, optimizer.batchsize)"


def machine_memory() -> int:
    """The machine's physical memory, bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def neighbours_within(structures: Sequence[Structure], cutoff: float) -> float:
    """The most neighbours an atom may have within ``cutoff`` (Å), from the density of a sample of ``structures``."""
    step = max(1, len(structures) // SAMPLED_STRUCTURES)
    most = 0.0
    for index in range(0, len(structures), step):
        s = structures[index]
        if s.is_periodic and s.cell is not None:
            density = s.n_atoms / abs(float(np.linalg.det(s.cell)))
            most = max(most, density * 4.0 / 3.0 * math.pi * cutoff**3)
        else:
            most = max(most, s.n_atoms - 1)
    return most


def needs(
    structures: Sequence[Structure], atoms_per_batch: float, n_features: int, rad_order: int, rad_cutoff: float,
    ang_order: int, ang_cutoff: float, layouts: Mapping[str, Sequence[int]], float_bytes: int, forces: bool,
    members: int = 1,
) -> list[Need]:
    """The largest consumers of memory of a training step, with the keys that size them (``members``: a committee's
    networks per species)."""
    pairs = neighbours_within(structures, max(rad_cutoff, ang_cutoff))
    angular_pairs = neighbours_within(structures, ang_cutoff)
    kept = FLOATS_PER_TERM * float_bytes * (2 if forces else 1)
    per_member = sum(n_features * h[0] + sum(a * b for a, b in zip(h, h[1:])) + h[-1] for h in layouts.values() if h)
    weights = per_member * members
    triplets = angular_pairs**2 / 2
    return [
        Need(larger(("descriptor.rad_order", rad_order + 1), ("descriptor.rad_cutoff", pairs)),
             atoms_per_batch * pairs * ((rad_order + 1) * kept + PAIR_LIST_BYTES),
             f"pair terms of a batch ({pairs:.3g} neighbours per atom, {rad_order + 1} radial terms each)"),
        Need(larger(("descriptor.ang_order", ang_order + 1), ("descriptor.ang_cutoff", triplets)),
             atoms_per_batch * triplets * (ang_order + 1) * kept,
             f"triplet terms of a batch ({triplets:.3g} triplets per atom, {ang_order + 1} angular terms each)"),
        Need(larger(("model.hidden", per_member), ("committee.members", members)), weights * ARRAYS_PER_WEIGHT * float_bytes,
             f"networks ({weights:.3g} weights of {members} member(s) with gradients and optimiser state)"),
    ]


def layer_sizes(n_features: int, hidden: Sequence[int]) -> list[int]:
    """The weights and biases of each layer of a network from ``n_features`` through ``hidden`` to one energy."""
    widths = [n_features, *hidden, 1]
    return [a * b + b for a, b in zip(widths, widths[1:])]


def kalman_need(n_features: int, layouts: Mapping[str, Sequence[int]], blocks: str) -> Need:
    """The Kalman filter's covariance (``optimizer=ekf``): ``n_b²`` float64 per block of ``n_b`` weights, a block per
    species' network or per layer (``blocks``), kept with a temporary of its size while it is updated."""
    networks = [layer_sizes(n_features, hidden) for hidden in layouts.values()]
    sizes = [sum(layers) for layers in networks] if blocks == "species" else [n for layers in networks for n in layers]
    largest = max(sizes)
    return Need("model.hidden", 2 * KALMAN_FLOAT_BYTES * sum(n * n for n in sizes),
                f"Kalman covariance of optimizer=ekf ({len(sizes)} block(s) of up to {largest} weights, {largest}² each)",
                "choose smaller networks, or a block per layer (optimizer.blocks=layer), or optimizer=adam")


def children_need(structures: Sequence[Structure], parents: Sequence[int], children: int) -> Need:
    """The Taylor children (``augment.children`` per structure of ``parents``) held in memory: each child's positions
    and its displacement, from the parents' mean size, and a structure's bookkeeping."""
    if len(parents) == 0:
        return Need("augment.children", 0.0, "Taylor children")
    step = max(1, len(parents) // SAMPLED_STRUCTURES)
    atoms = float(np.mean([structures[int(i)].n_atoms for i in parents[::step]]))
    count = float(len(parents)) * children
    return Need("augment.children", count * (2 * 3 * 8 * atoms + STRUCTURE_BYTES),
                f"Taylor children ({count:.3g} structures of {atoms:.3g} atoms)", "make fewer children per structure")


def larger(*factors: tuple[str, float]) -> str:
    """The key of the larger of two factors of a product: the one out of the ordinary."""
    return max(factors, key=lambda factor: factor[1])[0]


def check_memory(found: list[Need], available: int | None = None) -> None:
    """ConfigError naming the key of the largest need when it alone exceeds the machine's memory."""
    available = machine_memory() if available is None else available
    largest = max(found, key=lambda need: need.bytes)
    if largest.bytes > available:
        raise ConfigError(
            largest.key,
            f"would need about {largest.bytes / 2**30:.3g} GiB for the {largest.what}, more than this machine's "
            f"{available / 2**30:.3g} GiB; {largest.remedy}",
        )


def jacobian_bytes(structures: Sequence[Structure], indices: Sequence[int], cutoff: float, n_features: int,
                   float_bytes: int) -> float:
    """What the feature Jacobians (``caching.derivatives``) of the structures ``indices`` take, bytes: a
    ``(n_features, 3)`` block per atom and neighbour (and the atom itself), from the data's mean density."""
    if len(indices) == 0:
        return 0.0
    step = max(1, len(indices) // SAMPLED_STRUCTURES)
    sample = [structures[int(i)] for i in indices[::step]]
    per_atom = np.mean([neighbours_within([s], cutoff) + 1 for s in sample])
    atoms = np.mean([s.n_atoms for s in sample]) * len(indices)
    return float(atoms * per_atom * n_features * 3 * float_bytes)
