"""precision.* (training/precision.py): dtype and where labels and features live."""

from __future__ import annotations

import pytest
import torch

from aenet_exp.build.training import run_training
from aenet_exp.model import Potential
from aenet_exp.model.potential import MODEL_FILE
from aenet_exp.training.precision import resolve_dtype, storage_devices


@pytest.mark.parametrize("name, expected", [("float32", torch.float32), ("float64", torch.float64)])
def test_precision_sets_dtype_of_model(fast_config, tmp_path, name, expected):
    run_training(fast_config(f"precision={name}", "iterations=1"), tmp_path)
    model = Potential.load(tmp_path / MODEL_FILE)
    assert model.descriptor.dtype == expected and model.feature_mean.dtype == expected


def test_auto_precision_and_memory_modes():
    cpu, gpu = torch.device("cpu"), torch.device("cuda:0")
    assert resolve_dtype("auto", cpu) == torch.float32 and resolve_dtype("auto", gpu) == torch.float64
    assert storage_devices("cpu", gpu) == (cpu, cpu)
    assert storage_devices("gpu", gpu) == (gpu, gpu)
    assert storage_devices("mixed", gpu) == (cpu, gpu)

