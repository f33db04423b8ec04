"""The commands of ``python -m aenet_exp``: each a Hydra app whose primary config ``conf/<config_name>.yaml``
extends the schema dataclass stored as ``base_<config_name>``; what ``--help`` and ``docs/configuration.md`` say
about each."""

from __future__ import annotations

from dataclasses import dataclass

from aenet_exp.config import schema


@dataclass(frozen=True)
class Command:
    """A command: its primary config and schema, a line saying what it does, its usage and examples."""

    name: str
    config_name: str
    schema: type
    summary: str
    usage: str
    examples: tuple[str, ...]


COMMANDS = {command.name: command for command in (
    Command(
        "train", "train", schema.TrainConfig, "train a potential (-m sweeps; --cfg job prints the config)",
        "train [group=option ...] [key=value ...] [-m] [--cfg job]",
        ("python -m aenet_exp train force=subsampled optimizer.mu=3e-3",
         "python -m aenet_exp train data.path='my_dft/*.xsf' normalization.E_atomic='{O: -432.5, Ti: -1604.6}'",
         "python -m aenet_exp train -m optimizer.mu=1e-3,3e-3 force.weight=0.1,0.3"),
    ),
    Command(
        "build-db", "build_db", schema.BuildDbConfig,
        "build the HDF5 database data.database from data.path (streaming, atomic)",
        "build-db data.path=<structures> data.database=<file.h5> [augment=taylor] [key=value ...]",
        ("python -m aenet_exp build-db data.path='dft/*.xsf' data.database=dft.h5",),
    ),
    Command(
        "export", "export", schema.ExportConfig, "write a trained potential in ænet's network format",
        "export run=<run dir | model file | runs:/<id>> [format=aenet] [out=<dir>] [rmin=<Å>]",
        ("python -m aenet_exp export run=outputs/runs/<time> format=aenet",),
    ),
    Command(
        "select", "select", schema.SelectConfig,
        "rank candidate structures by a committee's disagreement and write the top n for DFT",
        "select run=<committee> pool=<structures | .h5> [n=50] [out=selected.xyz] [by=energy|forces]",
        ("python -m aenet_exp select run=outputs/runs/<time> pool='md/*.xyz' n=50 by=forces",),
    ),
    Command(
        "ensemble", "ensemble", schema.EnsembleConfig,
        "combine finished runs (same data and descriptor) into one calibrated committee",
        "ensemble runs=[<id>,<id>,...] | sweep=<parent run id> [out=<dir>]",
        ("python -m aenet_exp ensemble sweep=<parent run id>",
         "python -m aenet_exp ensemble runs=[outputs/runs/<time>,runs:/<run id>] tracking.enabled=false"),
    ),
    Command(
        "learn", "learn", schema.LearnConfig,
        "active learning: explore with the committee, label what it does not know, retrain, until trusted",
        "learn [group=option ...] [key=value ...] [resume=<campaign dir>]",
        ("python -m aenet_exp learn",
         "python -m aenet_exp learn oracle=command oracle.command='sbatch --wait run_dft.sh {input} {output}'",
         "python -m aenet_exp learn resume=outputs/campaigns/<time>"),
    ),
)}
