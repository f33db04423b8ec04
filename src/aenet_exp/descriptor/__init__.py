"""The Chebyshev descriptor and the pair/triplet graphs it is computed on.

Names are imported on first use, so that :mod:`aenet_exp.descriptor.checks` (config validation)
does not load torch.
"""

from importlib import import_module

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


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
