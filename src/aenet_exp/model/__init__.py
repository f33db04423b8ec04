"""Per-species networks, the potential built on the descriptor, and its one force path.

Names are imported on first use, so that :mod:`aenet_exp.model.checks` (config validation) does
not load torch.
"""

from importlib import import_module

_HOMES = {
    "ACTIVATIONS": "networks",
    "SpeciesNetworks": "networks",
    "mlp": "networks",
    "MODEL_FILE": "potential",
    "Potential": "potential",
    "Evaluation": "forces",
    "GraphInputs": "forces",
    "JacobianInputs": "forces",
    "energy_and_forces": "forces",
    "evaluate": "forces",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
