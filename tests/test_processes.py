"""Seeds in processes (`pipelines.processes`): results in call order, a failure stops new calls and reaches
the caller as the same error (a UsageError stays a one-line error in the CLI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.processes import map_in_processes


def _record(folder: str, call: int) -> tuple[int, int]:
    """Leaves a mark, fails on call 1; returns (call, the process it ran in)."""
    Path(folder, f"ran-{call}").touch()
    if call == 1:
        raise UsageError(f"call {call} failed")
    return call, os.getpid()


def test_results_come_in_call_order_from_other_processes(tmp_path):
    results = map_in_processes(_record, [(str(tmp_path), 2), (str(tmp_path), 0)], jobs=2)
    assert [call for call, _ in results] == [2, 0]
    assert all(pid != os.getpid() for _, pid in results)


def test_a_failure_stops_new_calls_and_is_raised_in_the_caller(tmp_path):
    with pytest.raises(UsageError, match="call 1 failed"):
        map_in_processes(_record, [(str(tmp_path), c) for c in (0, 1, 2, 3)], jobs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ran-0", "ran-1"]
