"""Flattening nested run configurations into MLflow parameters."""

from __future__ import annotations

from collections.abc import Mapping


def flatten_params(nested: Mapping, prefix: str = "") -> dict[str, str]:
    """Flatten a nested mapping into dotted keys with string values.

    ``{"force": {"fraction": 0.1}, "layers": [10, 10], "seed": None}`` becomes
    ``{"force.fraction": "0.1", "layers": "[10, 10]", "seed": "None"}``.
    Empty mappings are kept as the leaf value ``"{}"``.
    """
    flat: dict[str, str] = {}
    for key, value in nested.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, name))
        else:
            flat[name] = str(value)
    return flat
