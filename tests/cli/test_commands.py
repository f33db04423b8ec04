"""Every command is a Hydra app on its schema: ``--help`` from the schema, Hydra's composition errors as one line,
and nothing written but the command's own output (no run folder, no ``.hydra/`` record, no log)."""

from __future__ import annotations

import re

import pytest

from aenet_exp.config.schema import EXPERIMENT, TRACKING_URI

from helpers import SMALL, run_cli

# command -> lines of its --help: key, type, default, meaning [unit]
HELP_LINES = {
    "build-db": [r"seed +int +0 +seed of the augmentation", r"data\.database +str\? +null +HDF5 structure database",
                 r"augment\.children +int +4 +children per training structure"],
    "export": [r"run +str +\(required\) +the potential: a run directory", r"format +str +aenet +the output format",
               r"rmin +float\? +null +ænet's minimal interatomic distance"],
    "select": [r"run +str +\(required\) +the committee", r"n +int +50 +how many structures to select \[structures\]",
               r"by +str +energy +energy \(σ of the energy per atom\) \| forces",
               rf"tracking\.uri +str +{re.escape(TRACKING_URI)} +MLflow tracking store",
               rf"tracking\.experiment +str +{EXPERIMENT} +MLflow experiment name"],
    "ensemble": [r"runs +list\? +null +the finished runs", r"sweep +str\? +null +instead of runs",
                 rf"tracking\.uri +str +{re.escape(TRACKING_URI)} +MLflow tracking store"],
}


@pytest.mark.parametrize("command", sorted(HELP_LINES))
def test_help_lists_every_commands_keys_with_type_default_and_meaning(tmp_path, command):
    result = run_cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m aenet_exp {command} ")
    assert "powered by Hydra" not in result.stdout and "base_" not in result.stdout
    for line in HELP_LINES[command]:
        assert re.search(rf"^    {line}", result.stdout, re.MULTILINE), line


def test_the_command_list_names_every_command(tmp_path):
    listed = run_cli("--help", cwd=tmp_path).stdout
    for command in HELP_LINES:
        assert re.search(rf"^  {command} +\w", listed, re.MULTILINE), command


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, line",
    [
        (["select", "run=x", "pool=y", "nn=3"], "nn: no such key in the top level; did you mean n?"),
        (["select", "run=x", "pool=y", "tracking.urii=x"], "tracking.urii: no such key in tracking; did you mean tracking.uri"),
        (["export", "run=x", "rmin=abc"], "rmin: Value 'abc' of type 'str' could not be converted to Float"),
        (["ensemble", "runs=a,b"], "runs: a,b is several values; write a list as runs=[a,b]"),
        (["build-db", "data.compresion=lzf"], "data.compresion: no such key in data; did you mean data.compression"),
        (["build-db", "optimizer=sgd"], "optimizer: no such key in the top level"),
    ],
)
def test_composition_errors_of_every_command_are_one_line_exit_2(tmp_path, args, line):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(f"aenet_exp: error: {line}"), result.stderr
    assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, line",
    [
        (["build-db", f"data.path={SMALL}"], "data.database: expected the path of the HDF5 database to build"),
        (["export", "run=nothing-here"], "run: nothing-here: no model file"),
        (["select", "run=nothing-here", "pool=p.xyz", "n=0"], "n: expected a positive integer, got 0"),
        (["ensemble", "tracking.enabled=false"], "runs: give the runs (runs=[id,id,...]) or a sweep's parent run"),
    ],
)
def test_a_command_writes_no_run_folder_hydra_record_or_log(tmp_path, args, line):
    """The error comes from inside the Hydra app, after Hydra set the job up: the working directory stays empty."""
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(f"aenet_exp: error: {line}"), result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_build_db_writes_the_database_only(tmp_path):
    result = run_cli("build-db", f"data.path={SMALL}", "data.database=small.h5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["small.h5"]
