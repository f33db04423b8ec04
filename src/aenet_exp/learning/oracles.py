"""Oracles: what labels a structure with energy (eV), forces (eV/Å) and, for periodic cells when the calculator gives
it, stress (eV/Å³). An ASE calculator (``emt``; ``xtb``, GFN2-xTB through tblite; ``ase``, any calculator by import
path) or a shell ``command`` that reads ``{input}`` and writes ``{output}`` (extended XYZ; any DFT code, any scheduler).

:func:`label_all` runs the labels, up to ``workers`` at a time, each in a process of its own (a calculator in a
forkserver child, a command in its own session) so that one past ``timeout`` seconds is killed, and hands each
result to its caller the moment it arrives. A label that fails (an exception, a non-zero exit, a timeout, values
that are not finite, an unreadable output) is reported with its reason; the others go on.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
from ase import Atoms

from aenet_exp.errors import first_line

ORACLE_KINDS = ("emt", "xtb", "ase", "command")
CALCULATORS = {"emt": "ase.calculators.emt.EMT", "xtb": "tblite.ase.TBLite"}
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Label:
    """What an oracle returned for one structure: energy (eV), forces ``(n_atoms, 3)`` eV/Å, stress (Voigt, eV/Å³).
    (Here, not beside the label store: a labelling process imports this module alone, without torch.)"""

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None = None


@dataclass(frozen=True)
class Oracle:
    """How structures are labelled.

    Attributes:
        kind: one of :data:`ORACLE_KINDS`.
        calculator: ``ase``: the calculator's import path, ``module.Class`` (e.g. ``ase.calculators.vasp.Vasp``).
        kwargs: keyword arguments of the calculator (``xtb``: e.g. ``{method: GFN1-xTB}``; default GFN2-xTB).
        command: ``command``: a shell command with ``{input}`` and ``{output}``, run in a fresh directory.
        workers: labels run at once.
        timeout: seconds per structure (None: no limit).
    """

    kind: str
    calculator: str | None = None
    kwargs: dict = field(default_factory=dict)
    command: str | None = None
    workers: int = 1
    timeout: float | None = None

    def import_path(self) -> str:
        """The calculator class's import path (``command``: none)."""
        return self.calculator if self.kind == "ase" else CALCULATORS[self.kind]

    def settings(self) -> dict:
        """The calculator's keyword arguments (``xtb``: GFN2-xTB, quiet, unless given)."""
        if self.kind == "xtb":
            return {"method": "GFN2-xTB", "verbosity": 0, **self.kwargs}
        return dict(self.kwargs)


class OracleError(ValueError):
    """An oracle that cannot be used as configured (before any structure is sent)."""


def calculator_class(path: str):
    """The class at import path ``module.Class``; OracleError naming the path when there is none."""
    module_name, _, name = str(path).rpartition(".")
    if not module_name:
        raise OracleError(f"{path!r} is not an import path module.Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise OracleError(f"cannot import {module_name} ({first_line(error)})") from None
    found = getattr(module, name, None)
    if not callable(found):
        raise OracleError(f"{module_name} has no calculator {name}")
    return found


def check_oracle(oracle: Oracle) -> None:
    """OracleError when ``oracle`` cannot label anything: an unknown calculator, a command without a placeholder."""
    if oracle.kind == "command":
        missing = [name for name in ("{input}", "{output}") if name not in (oracle.command or "")]
        if missing:
            raise OracleError(f"the command must contain {' and '.join(missing)}, e.g. 'run_dft.sh {{input}} {{output}}'")
        return
    calculator_class(oracle.import_path())


def finite_label(atoms: Atoms, energy, forces, stress=None) -> Label:
    """A :class:`Label` of ``atoms`` from raw values; ValueError when they are missing, misshapen or not finite."""
    if energy is None or not np.isfinite(float(energy)):
        raise ValueError(f"the energy is not finite ({energy})")
    forces = np.asarray(forces, dtype=float)
    if forces.shape != (len(atoms), 3):
        raise ValueError(f"forces of shape {forces.shape}, expected ({len(atoms)}, 3)")
    if not np.isfinite(forces).all():
        raise ValueError("the forces are not finite")
    if stress is not None:
        stress = np.asarray(stress, dtype=float).reshape(-1)
        if not np.isfinite(stress).all():
            raise ValueError("the stress is not finite")
    return Label(float(energy), forces, stress)


def calculate(oracle: Oracle, atoms: Atoms) -> Label:
    """Label ``atoms`` with the oracle's calculator, in this process."""
    atoms = atoms.copy()
    atoms.calc = calculator_class(oracle.import_path())(**oracle.settings())
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    stress = None  # a molecule's, and a periodic cell's from a calculator that gives none
    if atoms.pbc.any():
        with contextlib.suppress(NotImplementedError):  # ASE's PropertyNotImplementedError: no stress implemented
            stress = atoms.get_stress()
    return finite_label(atoms, energy, forces, stress)


def _calculate_in_child(connection, oracle: Oracle, atoms: Atoms) -> None:
    """A child process's work: the label or the reason it failed, sent back through ``connection``."""
    try:
        connection.send(("label", calculate(oracle, atoms)))
    except BaseException as error:  # any failure is the label's, reported to the parent
        connection.send(("failed", f"{type(error).__name__}: {first_line(error)}"))
    finally:
        connection.close()


class _CalculatorJob:
    """One structure labelled by a calculator in a forkserver child (no OpenMP state inherited from this process)."""

    def __init__(self, oracle: Oracle, atoms: Atoms):
        context = multiprocessing.get_context("forkserver")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_calculate_in_child, args=(send, oracle, atoms), daemon=True)
        self._process.start()
        send.close()

    def waitable(self):
        return self._receive

    def result(self) -> tuple[str, Label | str] | None:
        """``("label", Label)`` or ``("failed", reason)`` once done, else None."""
        if self._receive.poll():
            try:
                outcome = self._receive.recv()
            except EOFError:
                outcome = ("failed", f"the labelling process died (exit {self._process.exitcode})")
            self._process.join()
            return outcome
        if not self._process.is_alive():
            self._process.join()
            if self._receive.poll():
                return self.result()
            return "failed", f"the labelling process died (exit {self._process.exitcode})"
        return None

    def kill(self) -> None:
        self._process.kill()
        self._process.join()


class _CommandJob:
    """One structure labelled by a shell command in a fresh directory, in a session of its own."""

    def __init__(self, oracle: Oracle, atoms: Atoms):
        from ase.io import write

        self._atoms = atoms
        self._directory = Path(tempfile.mkdtemp(prefix="aenet-label-"))
        self._input, self._output = self._directory / "input.xyz", self._directory / "output.xyz"
        write(self._input, atoms, format="extxyz")
        command = oracle.command.format(input=shlex.quote(str(self._input)), output=shlex.quote(str(self._output)))
        self._log = open(self._directory / "stderr.txt", "w+")
        self._process = subprocess.Popen(command, shell=True, cwd=self._directory, stdout=subprocess.DEVNULL,
                                         stderr=self._log, stdin=subprocess.DEVNULL, start_new_session=True)

    def waitable(self):
        return None

    def result(self) -> tuple[str, Label | str] | None:
        status = self._process.poll()
        if status is None:
            return None
        try:
            return self._read(status)
        finally:
            self._clean()

    def _read(self, status: int) -> tuple[str, Label | str]:
        from ase.io import read

        if status != 0:
            self._log.seek(0)
            lines = [line.strip() for line in self._log.read().splitlines() if line.strip()]
            return "failed", f"the command exited with status {status}" + (f": {lines[-1]}" if lines else "")
        if not self._output.is_file():
            return "failed", "the command wrote no {output} file"
        try:
            labelled = read(self._output, format="extxyz")
            if labelled.get_chemical_symbols() != self._atoms.get_chemical_symbols():
                raise ValueError("the output holds other atoms than the input")
            stress = labelled.get_stress() if self._atoms.pbc.any() and "stress" in labelled.calc.results else None
            return "label", finite_label(self._atoms, labelled.get_potential_energy(), labelled.get_forces(), stress)
        except Exception as error:  # ASE's many reader errors, a missing property: the label failed
            return "failed", f"unreadable output ({type(error).__name__}: {first_line(error)})"

    def kill(self) -> None:
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._process.wait()
        self._clean()

    def _clean(self) -> None:
        import shutil

        self._log.close()
        shutil.rmtree(self._directory, ignore_errors=True)


def label_all(
    oracle: Oracle, structures: Sequence[Atoms], on_label: Callable[[int, Label], None],
    on_failure: Callable[[int, str], None],
) -> None:
    """Label every structure, ``oracle.workers`` at a time: ``on_label(i, label)`` or ``on_failure(i, reason)`` for
    structure ``i`` as soon as it is done (in this process, so the caller stores it before the next arrives)."""
    job_type = _CommandJob if oracle.kind == "command" else _CalculatorJob
    waiting = list(range(len(structures)))
    running: dict[int, tuple[object, float]] = {}
    try:
        while waiting or running:
            while waiting and len(running) < max(1, oracle.workers):
                index = waiting.pop(0)
                running[index] = (job_type(oracle, structures[index]), time.monotonic())
            handles = [h for job, _ in running.values() if (h := job.waitable()) is not None]
            if handles and len(handles) == len(running):
                wait(handles, timeout=POLL_SECONDS)
            else:
                time.sleep(POLL_SECONDS)
            for index, (job, started) in list(running.items()):
                outcome = job.result()
                if outcome is None and oracle.timeout is not None and time.monotonic() - started > oracle.timeout:
                    job.kill()
                    outcome = ("failed", f"timed out after {oracle.timeout:g} s")
                if outcome is None:
                    continue
                del running[index]
                kind, value = outcome
                if kind == "label":
                    on_label(index, value)
                else:
                    on_failure(index, value)
    finally:
        for job, _ in running.values():
            job.kill()
