"""A finished committee run's calibration and test metrics, recomputed with the current code from its saved weights.

    python scripts/committee_metrics.py RUN_DIR

Rebuilds the run's split from its ``config.yaml`` (the same calibration and test structures), refits the σ
factors on the calibration structures and prints the test set's errors and uncertainty scores
(NLL, Spearman ρ, miscalibration area; calibrated and uncalibrated). Used for docs/results.md ("Committees").
"""

from __future__ import annotations

import argparse

from omegaconf import OmegaConf

import aenet_exp.config  # noqa: F401  registers the schema
from aenet_exp.calculator import Calculator
from aenet_exp.ensemble.command import predict
from aenet_exp.evaluation.errors import metrics_of
from aenet_exp.evaluation.uncertainty import calibrate, uncertainty_metrics
from aenet_exp.model import Potential
from aenet_exp.build.training import prepared_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a committee run's directory (config.yaml, potential.pt)")
    run = parser.parse_args().run_dir
    cfg = OmegaConf.load(f"{run}/config.yaml")
    data = prepared_data(cfg)
    potential = Potential.load(f"{run}/potential.pt")
    saved = potential.calibration
    calculator = Calculator(potential)
    references = data.atomic_energies if cfg.normalization.energy_target == "cohesive" else None
    refitted = calibrate(potential, lambda: predict(calculator, data, data.calibration, references))
    test = predict(calculator, data, data.test, references)
    print(f"factors saved with the run {saved}, refitted {refitted} on {len(data.calibration)} structures")
    for name, value in sorted({**metrics_of(test, "test"), **uncertainty_metrics(test, "test", potential.calibration)}.items()):
        print(f"{name:48s} {value:.4f}")


if __name__ == "__main__":
    main()
