"""The Chebyshev descriptor and the pair/triplet graphs it is computed on.

Names are imported on first use, so that :mod:`aenet_exp.descriptor.checks` (config validation)
does not load torch.
"""

from aenet_exp.lazy import lazy_exports

_HOMES = {
    "ChebyshevDescriptor": "chebyshev",
    "typespin_weights": "chebyshev",
    "AtomGraph": "graph",
    "Pairs": "graph",
    "Triplets": "graph",
    "build_graph": "graph",
    "collate_graphs": "graph",
    "find_pairs": "graph",
    "FeatureBlock": "blocks",
    "FeatureJacobian": "derivatives",
    "feature_jacobian": "derivatives",
}

__all__ = sorted(_HOMES)


__getattr__ = lazy_exports(__name__, _HOMES)
