"""The networks' layout checks, used by :func:`aenet_exp.model.networks.mlp` and config validation (no torch needed)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

from aenet_exp.errors import SettingError

# Activation functions by name (ænet's names; relu has no ænet counterpart); networks.ACTIVATIONS builds them.
ACTIVATION_NAMES = ("linear", "tanh", "sigmoid", "relu", "mtanh", "twist")


def check_activation(name: str) -> None:
    if name not in ACTIVATION_NAMES:
        raise SettingError("activations", f"must be known activations: unknown {name!r}; expected one of {sorted(ACTIVATION_NAMES)}")


def check_network(hidden: Sequence[int], activations: Sequence[str]) -> None:
    """SettingError naming ``hidden`` or ``activations``: integer sizes >= 1, one known activation per layer."""
    if not all(isinstance(size, Integral) and not isinstance(size, bool) for size in hidden):
        raise SettingError("hidden", f"must be integer layer sizes, got {list(hidden)}")
    if any(size < 1 for size in hidden):
        raise SettingError("hidden", f"must be layer sizes >= 1, got {list(hidden)}")
    if len(activations) != len(hidden):
        raise SettingError(
            "activations", f"must be one per hidden layer ({len(hidden)} hidden layers need {len(hidden)}), got {list(activations)}"
        )
    for name in activations:
        check_activation(name)
