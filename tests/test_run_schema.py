"""`read_run` reads every run-folder schema this project has written, and refuses one it does not know.

`tests/data/run_schema1_da6ab11` is a folder written by the code of commit da6ab11 (schema version 1, from
before `schema_version`, and before the `seed` column): its small text files, made with

    git -C /work/main worktree add /tmp/wt-da6ab11 da6ab11
    PYTHONPATH=/tmp/wt-da6ab11 python -m tff_fedmm compare --data DIR --methods local,fedmm \\
        --backbones deepfm --rounds 1 --quiet --out /tmp/oldrun

on two tiny markets (`conftest.small_market_files(("aa", "bb"), 40, 110, 6)`). A version-2 folder written
by a real run is read in tests/test_exports.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO_ROOT

from tff_fedmm.api import read_run
from tff_fedmm.cli import main
from tff_fedmm.errors import UsageError
from tff_fedmm.run_schema import SCHEMA_VERSION

OLD = REPO_ROOT / "tests" / "data" / "run_schema1_da6ab11"


def _as_version(tmp_path: Path, version, results_version=None) -> Path:
    """The old folder, relabelled: `version` in config.json and `results_version` (default the same) as the
    results.csv column, as the current code writes them."""
    folder = tmp_path / "run"
    shutil.copytree(OLD, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "schema_version": version}))
    results = pd.read_csv(folder / "results.csv")
    results.assign(schema_version=version if results_version is None else results_version).to_csv(
        folder / "results.csv", index=False)
    return folder


def test_reads_a_folder_written_before_schema_versions():
    run = read_run(OLD)
    assert run.schema_version == 1 and run.exports == {}
    assert list(run.results.columns) == ["seed", "method", "backbone", "market", "auc", "logloss", "hr@10",
                                         "ndcg@10", "alignment"]
    assert set(run.results["seed"]) == {0} and "seed" in run.history.columns and "seed" in run.codebooks.columns
    assert sorted(zip(run.results["method"], run.results["market"])) == [
        ("fedmm", "aa"), ("fedmm", "bb"), ("local", "aa"), ("local", "bb")]
    assert run.results.loc[run.results["method"] == "local", "auc"].round(6).tolist() == [0.531563, 0.491406]
    assert run.config["methods"] == ["local", "fedmm"]


def test_reads_the_current_version_into_the_same_tables(tmp_path):
    run, old = read_run(_as_version(tmp_path, SCHEMA_VERSION)), read_run(OLD)
    assert run.schema_version == SCHEMA_VERSION
    assert "schema_version" not in run.results.columns  # read_run gives every version the same shape
    for name in ("results", "history", "codebooks", "codebook_history"):
        pd.testing.assert_frame_equal(getattr(run, name), getattr(old, name))


@pytest.mark.parametrize(("version", "results_version", "fragment"), [
    (SCHEMA_VERSION + 1, None, f"schema_version {SCHEMA_VERSION + 1} by a newer tff_fedmm"),
    ("two", None, "'two' is not a version"),
    (SCHEMA_VERSION, 1, "inconsistent schema_version (config.json says 2, results.csv says 1)"),
])
def test_an_unknown_or_inconsistent_version_is_refused_clearly(tmp_path, version, results_version, fragment):
    with pytest.raises(UsageError) as err:
        read_run(_as_version(tmp_path, version, results_version))
    assert fragment in str(err.value)


def test_report_opens_an_old_folder_and_refuses_a_future_one_in_one_line(tmp_path, capsys):
    assert main(["report", str(OLD), "--metrics", "auc,ndcg@10"]) == 0
    assert "| local | deepfm |" in capsys.readouterr().out
    assert main(["report", str(_as_version(tmp_path, SCHEMA_VERSION + 1)), "--metrics", "auc"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fedmm: error: ") and "newer tff_fedmm" in err[0]
