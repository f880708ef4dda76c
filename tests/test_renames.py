"""Renamed methods and options (issue #14): the one rename table covers every old name, and an old name is
refused wherever a user can type it (CLI flags, tasks, api), with one line naming the new name."""

from __future__ import annotations

import pytest
from test_tasks import load_task

from tff_fedmm import api
from tff_fedmm.checkpoints import RunCheckpoints
from tff_fedmm.cli import main
from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.compare_names import ANCHORED_METHODS, CODEBOOK_RULES, METHODS, RENAMED

# Every name issue #14 retired, by kind.
OLD = {"method": {"fedmm-local-only", "fedmm-global-only"}, "codebook rule": {"mean", "usage"},
       "code variant": {"private", "private-fedcf", "global-only", "federated"}}


def test_the_table_covers_every_old_name_and_maps_it_to_a_current_one():
    assert {kind: set(names) for kind, names in RENAMED.items()} == OLD
    assert set(RENAMED["method"].values()) <= set(METHODS) and not set(RENAMED["method"]) & set(METHODS + ANCHORED_METHODS)
    assert set(RENAMED["codebook rule"].values()) == set(CODEBOOK_RULES)
    assert not set(RENAMED["codebook rule"]) & set(CODEBOOK_RULES)


def test_code_variant_labels_are_those_the_runs_write():
    from tff_fedmm.federated.codebook_aggregator import RULES
    from tff_fedmm.pipelines.code_variants import CODE_METHODS

    assert RULES == CODEBOOK_RULES
    for tower, cf in ((False, "local"), (True, "federated")):
        labels = {CODE_METHODS[m].variant(tower).label for m in CODE_METHODS}
        assert {new.format(cf=cf) for new in RENAMED["code variant"].values()} == labels | {"private-codebooks-local-cf"}


def _one_line(capsys, status: int, *expected: str) -> None:
    assert status == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("fedmm: error: ") and all(e in line for e in expected), line


@pytest.mark.parametrize("argv,new", [
    (["compare", "--methods", "local,fedmm-local-only", "--out", "unused"], "'fedmm-private-codebooks'"),
    (["compare", "--methods", "fedmm-global-only", "--out", "unused"], "'fedmm-level1-only'"),
    (["compare", "--methods", "fedmm", "--codebook-rule", "mean", "--out", "unused"], "'fedavg'"),
    (["run", "--codebook-rule", "usage"], "'kmeans'"),
    (["signature", "--rule", "mean"], "'fedavg'"),
])
def test_the_cli_refuses_an_old_name_in_one_line_naming_the_new_one(capsys, tmp_path, argv, new):
    _one_line(capsys, main(argv), "renamed", new)
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize("task,argv,new", [
    ("leak_effect", ["--methods", "fedmm-global-only", "--out", "unused"], "'fedmm-level1-only'"),
    ("tune_fedmm", ["--variants", "mean+share-codes", "--out", "unused"], "'fedavg'"),
    ("alignment_probe", ["--rule", "usage", "--out", "unused"], "'kmeans'"),
])
def test_the_tasks_refuse_an_old_name_naming_the_new_one(capsys, task, argv, new):
    _one_line(capsys, load_task(task).main(argv), "renamed", new)


def test_the_api_refuses_an_old_name_naming_the_new_one():
    from tff_fedmm.pipelines.signature import signature_report

    calls = [(lambda: api.make_config(codebook_rule="mean"), "'fedavg'"),
             (lambda: api.check_choices(["fedmm-local-only"], ["deepfm"]), "'fedmm-private-codebooks'"),
             (lambda: api.check_tuned({"fedmm-global-only/deepfm": {"embed_dim": 8}}), "'fedmm-level1-only'"),
             # refused before any data is read
             (lambda: api.run_method(None, "fedmm-global-only"), "'fedmm-level1-only'"),
             (lambda: signature_report(rule="usage"), "'kmeans'")]
    for call, new in calls:
        with pytest.raises(UsageError, match="renamed") as err:
            call()
        assert new in str(err.value) and "\n" not in str(err.value)


def test_resume_refuses_checkpoints_of_another_format_in_one_line(tmp_path):
    """Stage names changed with the renames (format 3): an older folder is refused, never silently retrained."""
    RunCheckpoints(tmp_path, False, {"data": "d", "checkpoint_format": "2"})
    with pytest.raises(UsageError, match="--resume: .* holds checkpoints of format 2 .* rerun without --resume"):
        RunCheckpoints(tmp_path, True, {"data": "d", "checkpoint_format": api.CHECKPOINT_FORMAT})
