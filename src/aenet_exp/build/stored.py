"""A finished run's stored config (its ``config.yaml``) as the typed settings ``ensemble`` takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from aenet_exp.errors import ConfigError, first_line
from aenet_exp.rundir import CONFIG_FILE
from aenet_exp.model.locate import RUNS_SCHEME, download_artifact


@dataclass(frozen=True)
class StoredRun:
    """The resolved config a run trained with, as plain data (``settings``), and what is read from it."""

    settings: dict[str, Any]

    @property
    def seed(self) -> int:
        return self.settings["seed"]

    @property
    def cohesive(self) -> bool:
        """Whether the run trained on cohesive energies (its energies less the atomic references)."""
        return self.settings["normalization"]["energy_target"] == "cohesive"

    def prepared_data(self):
        """The run's structures read, filtered and split as its training had them
        (:class:`~aenet_exp.training.dataset.PreparedData`)."""
        from aenet_exp.build.training import prepared_data  # start-up: torch only when a committee is built

        return prepared_data(OmegaConf.create(self.settings))

    @property
    def calibration_seed(self) -> int:
        """The seed the run's committee calibration split was drawn from (and ensemble's calibration split)."""
        from aenet_exp.build.training import CALIBRATION_SEED_OFFSET  # start-up, as above

        return self.seed + CALIBRATION_SEED_OFFSET

    def yaml(self) -> str:
        return yaml_text(self.settings)


def yaml_text(data: dict[str, Any]) -> str:
    """``data`` as YAML, written as the runs' own ``config.yaml`` is."""
    return OmegaConf.to_yaml(data)


def stored_run(location: str, uri: str) -> StoredRun:
    """The config of the run at ``location`` (its directory, its model file or ``runs:/<id>`` in the store ``uri``);
    an error naming ``runs`` when it has none."""
    if location.startswith(RUNS_SCHEME):
        run_id = location.removeprefix(RUNS_SCHEME).strip("/").split("/")[0]
        try:
            path = download_artifact(run_id, CONFIG_FILE, uri)
        except Exception as error:  # MLflow's errors for a missing artifact
            raise ConfigError("runs", f"{location} has no {CONFIG_FILE} ({first_line(error)})") from None
    else:
        path = Path(location)
        path = path / CONFIG_FILE if path.is_dir() else path.parent / CONFIG_FILE
        if not path.is_file():
            raise ConfigError("runs", f"{location} has no {CONFIG_FILE} beside its model")
    return StoredRun(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
