"""Helpers shared by the tests (``from helpers import ...``; pytest puts ``tests/`` on the path, see pyproject.toml):
data paths, fast training settings, composed configs, the CLI as a subprocess, training with a recording callback,
untrained potentials, MLflow stores. The cases the behaviour tests compare against live in
:mod:`helpers.behaviour_cases` and :mod:`helpers.committee_cases`; a trainer without descriptor graphs in
:mod:`helpers.handmade`. Fixtures stay in ``tests/conftest.py``."""

from .cli import CliRun, run_cli
from .configs import FAST, command, compose_command, compose_train
from .paths import DATA, E_ATOMIC, ROOT, SMALL
from .potentials import make_potential
from .store import runs_of, store_uri
from .training import Counter, Recorder, train

__all__ = [
    "DATA", "E_ATOMIC", "FAST", "ROOT", "SMALL", "CliRun", "Counter", "Recorder", "command", "compose_command",
    "compose_train", "make_potential", "run_cli", "runs_of", "store_uri", "train",
]
