"""The Chebyshev descriptor and the pair/triplet graphs it is computed on."""

from aenet_exp.descriptor.chebyshev import ChebyshevDescriptor, typespin_weights
from aenet_exp.descriptor.graph import AtomGraph, Pairs, Triplets, build_graph, collate_graphs, find_pairs

__all__ = ["AtomGraph", "ChebyshevDescriptor", "Pairs", "Triplets", "build_graph", "collate_graphs", "find_pairs", "typespin_weights"]
