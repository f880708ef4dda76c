"""The checkpoint write protocol: whatever a kill leaves in a stage's folder, the round loop resumes to the
uninterrupted result (issue: a torn latest round made `--resume` fail with ProgramStateExistsError)."""

from __future__ import annotations

import numpy as np
import pytest

from tff_fedmm.checkpoints import RunCheckpoints
from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.rounds import run_rounds

ROUNDS = 4


def _step(state, round_num: int):
    """A deterministic round: the state accumulates, the metrics row records it."""
    state = np.asarray(state, np.float64) * 1.5 + round_num
    return state, np.array([float(state.sum())])


def _run(checkpoints: RunCheckpoints, rounds: int = ROUNDS):
    return run_rounds(np.ones(3), _step, rounds, 1, checkpoint=checkpoints.stage("ctr-fedavg-deepfm"))


def _tear(folder) -> None:
    for saved in folder.rglob("*"):
        if saved.is_file():
            saved.write_bytes(b"torn")


@pytest.fixture
def straight(tmp_path):
    return run_rounds(np.ones(3), _step, ROUNDS, 1)


def test_a_torn_latest_round_is_deleted_and_recomputed(tmp_path, straight):
    """The issue's sequence: rounds 1 and 2 saved, round 2 unreadable; resume falls back to round 1 and
    must be able to save round 2 again (it raised ProgramStateExistsError)."""
    _run(RunCheckpoints(tmp_path, False, {}), rounds=2)
    stage = tmp_path / "checkpoints" / "ctr-fedavg-deepfm"
    assert sorted(p.name for p in stage.iterdir()) == ["round_1", "round_2"]
    _tear(stage / "round_2")

    resumed = _run(RunCheckpoints(tmp_path, True, {}))
    np.testing.assert_array_equal(resumed.metrics, straight.metrics)
    np.testing.assert_array_equal(resumed.best_state, straight.best_state)


def test_leftovers_of_a_cut_short_save_are_cleared(tmp_path, straight):
    """A temporary folder of a save cut short, and a version past the one resume reads (a timeline that is
    being recomputed), never block the save of the recomputed round."""
    _run(RunCheckpoints(tmp_path, False, {}), rounds=3)
    stage = tmp_path / "checkpoints" / "ctr-fedavg-deepfm"
    (stage / "round_3_temp1234" / "variables").mkdir(parents=True)
    _tear(stage / "round_3")
    (stage / "round_9").mkdir()  # no SavedModel: unreadable, deleted on load

    resumed = _run(RunCheckpoints(tmp_path, True, {}))
    np.testing.assert_array_equal(resumed.metrics, straight.metrics)
    assert sorted(p.name for p in stage.iterdir()) == ["round_3", "round_4"]


def test_every_round_unreadable_is_refused_with_one_line(tmp_path):
    _run(RunCheckpoints(tmp_path, False, {}), rounds=2)
    _tear(tmp_path / "checkpoints" / "ctr-fedavg-deepfm")
    with pytest.raises(UsageError, match="no readable checkpoint of stage 'ctr-fedavg-deepfm'.*without --resume"):
        _run(RunCheckpoints(tmp_path, True, {}))


def test_an_unreadable_finished_stage_is_refused_with_one_line(tmp_path):
    stage = RunCheckpoints(tmp_path, False, {}).stage("cf")
    stage.save_done({"x": np.arange(3)})
    np.testing.assert_array_equal(stage.load_done()["x"], np.arange(3))
    (tmp_path / "checkpoints" / "cf.npz").write_bytes(b"torn")
    with pytest.raises(UsageError, match="finished stage 'cf'.*cannot be read.*without --resume"):
        stage.load_done()
