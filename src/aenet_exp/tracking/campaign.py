"""A campaign's MLflow record: one parent run (tag ``aenet_exp.command=learn``) with a step per generation, whose
trainings are its child runs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aenet_exp.errors import first_line
from aenet_exp.files import write_atomically
from aenet_exp.rundir import RUN_ID_FILE
from aenet_exp.tracking.mlflow_run import MlflowRun
from aenet_exp.tracking.observer import TrackingUnavailable

COMMAND_TAG = "aenet_exp.command"


class CampaignRecord:
    """The campaign's parent run in the store ``uri``: started anew, or continued when ``directory`` holds its id."""

    def __init__(self, uri: str, experiment: str, directory: Path, name: str, params: Mapping[str, object]):
        self.uri, self.directory = uri, Path(directory)
        recorded = self.directory / RUN_ID_FILE
        try:
            if recorded.is_file():
                self.run = MlflowRun.attach(uri, recorded.read_text().strip())
            else:
                self.run = MlflowRun.start(uri, experiment, name, params, {COMMAND_TAG: "learn", "aenet_exp.role": "campaign"})
                write_atomically(recorded, self.run.run_id + "\n")
        except Exception as error:  # MLflow and SQLAlchemy raise many types for an unusable store
            raise TrackingUnavailable(f"tracking.uri: cannot record the campaign at {uri}: {first_line(error)}") from error

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def log_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        self.run.log_metrics(dict(metrics), step=generation)

    def log_artifact(self, path: Path, artifact_path: str) -> None:
        self.run.log_artifact(path, artifact_path)

    def finish(self, status: str, reason: str | None = None) -> None:
        self.run.finish(status, reason)
