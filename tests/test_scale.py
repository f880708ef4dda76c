"""`tasks/scale.py` (issue #15, item 5): two tiny sizes end to end, its one-line errors, and the measurement
underneath (`scale.process_cost`: a tree's CPU and memory, no process left behind; `tff_fedmm.scale`'s slope)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import signal
import textwrap
import time

import pandas as pd
import pytest
from conftest import REPO_ROOT
from test_tasks import load_task

from tff_fedmm.scale import COLUMNS, loglog_slope


@pytest.mark.slow
def test_two_tiny_sizes_give_rows_a_plot_and_a_slope(tmp_path):
    out = tmp_path / "scale"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tasks" / "scale.py"), "--sizes", "4000,2000", "--rounds", "1",
         "--out", str(out), "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(out / "scale.csv")
    assert list(table.columns) == COLUMNS
    assert table["size"].tolist() == [2000, 4000]  # sorted
    assert ((table["interactions"] - table["size"]).abs() <= 0.03 * table["size"]).all()
    assert (table["markets"] == 5).all() and (table["users"].diff().dropna() > 0).all()
    assert (table[["wall_seconds", "cpu_seconds", "peak_rss_mb", "largest_process_rss_mb"]] > 0).all().all()
    assert (table["peak_rss_mb"] >= table["largest_process_rss_mb"] * 0.5).all()  # the tree, not one small process
    assert (table["leftover_processes"] == 0).all()  # `fedmm run` ends its own worker
    assert (out / "scale.png").read_bytes()[:4] == b"\x89PNG"
    for size in (2000, 4000):
        assert (out / f"size-{size}" / "data" / "m0_5core.txt").is_file()
        assert not (out / f"size-{size}" / "run" / "INCOMPLETE").exists()
    assert result.stdout.strip().splitlines()[-1].startswith("scale: loglog_slope wall_seconds/interactions = ")


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--out", "x", "--sizes", "50000,abc"], "--sizes: expected distinct comma-separated interaction counts"),
    (["--out", "x", "--sizes", "100"], "of 2000 or more"),
    (["--out", "x", "--sizes", "5000,5000"], "--sizes: expected distinct"),
    (["--out", "x", "--sizes", ","], "--sizes"),
    (["--sizes", "5000"], "required: --out"),
    (["--out", "x", "--rounds", "0"], "--rounds: expected a positive"),
])
def test_bad_flags_are_one_line_errors(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_task("scale").main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_process_cost_counts_an_orphaned_grandchild_and_ends_it(tmp_path):
    """The child starts a grandchild that burns CPU, then exits without it (as a run whose worker outlived it
    would): its CPU is counted, and it is ended. Measured in a fresh process, which becomes a subreaper."""
    busy = tmp_path / "busy-done"
    grandchild = (f"import pathlib, time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
                  f"pathlib.Path({str(busy)!r}).touch()\ntime.sleep(60)")
    child = textwrap.dedent(f"""
        import os, subprocess, sys, time
        proc = subprocess.Popen([sys.executable, "-c", {grandchild!r}])
        print(proc.pid, flush=True)
        blob = bytearray(150 * 2**20)  # ~150 MB resident in the child
        time.sleep(1.0)
        while not os.path.exists({str(busy)!r}):
            time.sleep(0.05)
    """)
    measurer = textwrap.dedent(f"""
        import json, sys
        from dataclasses import asdict
        from pathlib import Path
        from tff_fedmm.scale.process_cost import measure_command
        cost = measure_command([sys.executable, "-c", {child!r}], Path({str(tmp_path / "log")!r}), interval_s=0.1)
        print(json.dumps(asdict(cost)))
    """)
    result = subprocess.run([sys.executable, "-c", measurer], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    cost = json.loads(result.stdout)
    assert cost["returncode"] == 0 and cost["leftovers"] == 1 and 1.0 <= cost["wall_seconds"] < 60
    assert cost["cpu_seconds"] >= 0.6  # the grandchild's busy loop, reaped after it was ended
    assert cost["largest_process_rss_mb"] >= 150 and cost["peak_rss_mb"] >= 150
    pid = int((tmp_path / "log").read_text().split()[0])
    assert not os.path.exists(f"/proc/{pid}")


def test_loglog_slope():
    assert loglog_slope([1e4, 1e5, 1e6], [2.0, 20.0, 200.0]) == pytest.approx(1.0)
    assert loglog_slope([1e4, 1e5], [1.0, 100.0]) == pytest.approx(2.0)
    assert math.isnan(loglog_slope([5e4], [3.0]))


def test_sigterm_stops_the_size_in_progress_with_one_line_and_status_124(tmp_path):
    """As `timeout` stops a sweep: here during the generation of a large set (no run started yet)."""
    out = tmp_path / "scale"
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "tasks" / "scale.py"), "--sizes", "5000000",
                             "--out", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    time.sleep(6)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 124, stderr
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("scale: stopped during 5000000 interactions after ") and "n/a" in lines[-1]
    assert stderr == "" and not (out / "scale.csv").exists()
