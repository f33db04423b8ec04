"""A new user's first hour, as they meet it on the command line: each trap of the first try, closed."""

from __future__ import annotations

import pytest

from helpers import DATA, FAST, ROOT, run_cli, runs_of, store_uri

pytestmark = pytest.mark.slow

ETHANOL = DATA / "ethanol" / "ethanol5.xyz"
REFERENCES = "normalization.E_atomic={C: -1025.2770951782686, H: -13.568422383046626, O: -2035.5709809589698}"
QUICK = [a for a in FAST if not a.startswith(("data.", "caching="))]  # the fast settings without their data and caches


def test_the_default_run_caches_features_and_shows_progress_without_a_terminal(tmp_path):
    uri = store_uri(tmp_path)
    result = run_cli("train", *QUICK, "tracking.show_progress=true", f"tracking.uri={uri}", "iterations=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "epoch 3/3  loss " in result.stdout  # a progress line though stdout is a pipe
    _, runs = runs_of(uri)
    assert runs[0].data.params["caching.kept"] == "features"  # energy-only: features computed once


def test_a_sweep_over_a_key_without_effect_is_warned_about(tmp_path):
    result = run_cli("train", "-m", *FAST, f"tracking.uri={store_uri(tmp_path)}", "iterations=1",
                     "force.fraction=0.1,0.3", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    warning = "aenet_exp: warning: force.fraction has no effect: forces are not trained (force.weight=0)"
    assert result.stderr.count(warning) == 2  # once per job


def test_references_of_the_sample_are_not_kept_for_other_data(tmp_path):
    uri = store_uri(tmp_path)
    missing = run_cli("train", *QUICK, f"data.path={ETHANOL}", f"tracking.uri={uri}", cwd=tmp_path)
    assert missing.returncode == 2
    assert "normalization.E_atomic: cohesive energies need atomic reference energies for ['C', 'H', 'O']" in missing.stderr
    partial = run_cli("train", *QUICK, f"data.path={ETHANOL}", "+normalization.E_atomic={C: -1025.28, H: -13.57}",
                      f"tracking.uri={uri}", cwd=tmp_path)
    assert partial.returncode == 2 and "no reference energy for species ['O']" in partial.stderr  # not the sample's O
    given = run_cli("train", *QUICK, f"data.path={ETHANOL}", REFERENCES, f"tracking.uri={uri}", "data.testpercent=20",
                    cwd=tmp_path)
    assert given.returncode == 0, given.stderr
    total = run_cli("train", *QUICK, f"data.path={ETHANOL}", "normalization.energy_target=total", f"tracking.uri={uri}",
                    "data.testpercent=20", cwd=tmp_path)
    assert total.returncode == 0, total.stderr  # total energies need no references
    _, runs = runs_of(uri)
    assert {r.data.params["data.name"] for r in runs} == {"ethanol5"}  # named after the data, not tio2-sample
    assert {r.data.params["data.E_atomic"] for r in runs} == {"None"}


def test_help_lists_groups_and_keys_with_their_meaning(tmp_path):
    result = run_cli("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "powered by Hydra" not in result.stdout and "base_" not in result.stdout
    assert "force            full, off*, subsampled" in result.stdout
    assert "descriptor.rad_cutoff" in result.stdout and "radial cutoff, Å [Å]" in result.stdout


def test_a_refused_run_leaves_no_folder(tmp_path):
    bad_value = run_cli("train", *FAST, "force.weight=2", cwd=tmp_path)
    bad_data = run_cli("train", *QUICK, f"data.path={tmp_path / 'nothing'}", cwd=tmp_path)
    broken = tmp_path / "broken.xsf"
    broken.write_text("# total energy = -1.0 eV\nCRYSTAL\nPRIMVEC\n1 0 0\n")
    bad_file = run_cli("train", *QUICK, f"data.path={broken}", "normalization.energy_target=total", cwd=tmp_path)
    assert [r.returncode for r in (bad_value, bad_data, bad_file)] == [2, 2, 2]
    assert "data.path: " in bad_data.stderr and f"{broken}, line 4" in bad_file.stderr
    runs = tmp_path / "outputs" / "runs"
    assert not runs.exists() or not list(runs.iterdir())  # no run folder with only .hydra/ in it


def test_the_end_of_a_run_points_to_its_results(recorded_cli_run):
    result, uri = recorded_cli_run.result, recorded_cli_run.uri  # a run with forces, into hydra.run.dir=run
    assert result.returncode == 0, result.stderr
    _, runs = runs_of(uri)
    run_id, experiment_id = runs[0].info.run_id, runs[0].info.experiment_id
    tail = result.stdout.splitlines()[-8:]
    assert tail[0] == "done: errors of the final model"
    assert "meV/atom" in tail[2] and "eV/Å" in tail[2] and tail[3].lstrip().startswith("train") and "test" in tail[4]
    assert tail[5].startswith("run folder: ") and tail[5].endswith("/run") and tail[6] == f"MLflow run: {run_id} in experiment 'aenet_exp'"
    assert tail[7] == f"  mlflow ui --backend-store-uri {uri}   then open http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"


def test_a_sweep_ends_with_its_jobs_best_first_and_readable_names(grid_sweep):
    result, uri = grid_sweep.result, grid_sweep.uri  # optimizer.mu=1e-3,3e-3 × force.weight=0.1,0.3
    assert result.returncode == 0, result.stderr
    table = result.stdout[result.stdout.index("sweep "):].splitlines()
    assert table[0].endswith(": 4 jobs, best first by test/energy_rmse") and len(table) == 3 + 4
    errors = [float(line.split()[2]) for line in table[3:]]
    assert errors == sorted(errors)
    client, runs = runs_of(uri)
    jobs = [r for r in runs if r.data.tags.get("aenet_exp.role") == "job"]
    assert {r.info.run_name for r in jobs} == {f"tio2-small mu={mu} weight={w}" for mu in ("0.001", "0.003") for w in ("0.1", "0.3")}
    assert all(r.inputs.dataset_inputs[0].dataset.name == "tio2-small" for r in jobs)
    experiment = client.get_experiment(jobs[0].info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on the runs table


def test_the_readmes_search_filters_find_the_sweeps_runs(grid_sweep):
    from mlflow.tracking import MlflowClient

    result, uri = grid_sweep.result, grid_sweep.uri
    assert result.returncode == 0, result.stderr
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- search filters")[1].split("```text\n", 1)[1].split("```", 1)[0]
    filters = [line for line in block.splitlines() if line.strip()]
    assert len(filters) == 3, filters
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("aenet_exp").experiment_id
    for text in filters:  # MLflow rejects a malformed filter; a filter that matches nothing misleads
        assert client.search_runs([experiment], filter_string=text), text
