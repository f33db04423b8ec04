"""Per-species networks, the potential built on the descriptor, and its one force path.

Names are imported on first use, so that :mod:`aenet_exp.model.checks` (config validation) does
not load torch.
"""

from aenet_exp.lazy import lazy_exports

_HOMES = {
    "ACTIVATIONS": "networks",
    "SpeciesNetworks": "networks",
    "mlp": "networks",
    "linear_layers": "networks",
    "MODEL_FILE": "potential",
    "Potential": "potential",
    "Evaluation": "forces",
    "GraphInputs": "forces",
    "JacobianInputs": "forces",
    "energy_and_forces": "forces",
    "evaluate": "forces",
}

__all__ = sorted(_HOMES)


__getattr__ = lazy_exports(__name__, _HOMES)
