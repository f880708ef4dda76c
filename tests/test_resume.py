"""Crash-resume: a resume against changed data or a torn checkpoint is refused; Ctrl-C stops a run at
once; a method's rows do not depend on the methods run before it. (A run killed mid-stage and resumed ends
with exactly the results of an uninterrupted run: tests/test_kill_anywhere.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import small_market_files
from test_cli_compare import alive, subreaper, tiny_market_files, worker_descendants  # noqa: F401 (fixture)

from tff_fedmm.cli import main

ARGS = ["compare", "--methods", "fedper,fedmm", "--backbones", "deepfm", "--rounds", "3", "--quiet"]


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tff_fedmm", *ARGS, "--data", str(data), "--out", str(out), *extra]


@pytest.mark.slow
def test_resume_refuses_changed_data_and_torn_checkpoints(market_dir, tmp_path, capsys):
    files = tiny_market_files()
    data = market_dir(files)
    out = tmp_path / "run"
    assert main([*ARGS, "--methods", "fedper", "--rounds", "1", "--data", str(data), "--out", str(out)]) == 0

    first = next(iter(files))
    (data / first).write_text(files[first] + files[first].splitlines()[1].replace("2020-01-01", "2020-02-01") + "\n")
    assert main([*ARGS, "--methods", "fedper", "--rounds", "1", "--data", str(data), "--out", str(out),
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "data" in err[0]

    # A finished stage keeps only its outputs (its round states are deleted): damage them. (Unreadable round
    # states are deleted and recomputed, or refused when none is left: tests/test_checkpoints.py.)
    (data / first).write_text(files[first])
    assert not (out / "checkpoints" / "seed0-ctr-fedper-deepfm").exists()
    (out / "checkpoints" / "seed0-ctr-fedper-deepfm.npz").write_bytes(b"torn")
    assert main([*ARGS, "--methods", "fedper", "--rounds", "1", "--data", str(data), "--out", str(out),
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'seed0-ctr-fedper-deepfm'" in err[0] and "cannot be read" in err[0]


@pytest.mark.slow
def test_ctrl_c_stops_quickly_leaves_folder_incomplete_and_no_worker(market_dir, tmp_path, subreaper):
    data = market_dir(tiny_market_files())
    out = tmp_path / "interrupted"
    launched = time.time()
    process = subprocess.Popen(_command(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 400
    while not list(out.glob("checkpoints/*/round_1")):
        assert process.poll() is None and time.monotonic() < deadline, "no round was checkpointed"
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGINT)
    started = time.monotonic()
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 15, "Ctrl-C took too long"
    assert process.returncode == 130
    assert err.strip().splitlines()[-1].startswith("fedmm: interrupted")
    assert (out / "INCOMPLETE").exists() and not (out / "results.csv").exists()
    time.sleep(2)
    # Only workers started after the launch count: earlier in-process tests own one in this process. The
    # worker dies with its Python (PR_SET_PDEATHSIG); dead, it lingers as the subreaper's zombie until reaped.
    assert [w for w in worker_descendants(os.getpid(), since=launched) if alive(w)] == []


@pytest.fixture(scope="module")
def every_method_rows(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """Every method run forwards and backwards, one round, on markets of 200 users + 110 items: more
    RQ-VAE rows than one batch (256), so a shuffle that depended on the order would change the codes (with
    everything in one batch, the order-dependent bug went unseen). Returns (data, sorted rows per order)."""
    from tff_fedmm.pipelines.compare_names import METHODS

    data = tmp_path_factory.mktemp("data200")
    for name, text in small_market_files(("aa", "bb"), users=200, items=110, per_user=6).items():
        (data / name).write_text(text)
    rows = {}
    for name, methods in (("forwards", list(METHODS)), ("backwards", list(reversed(METHODS)))):
        out = tmp_path_factory.mktemp(name) / "run"
        done = subprocess.run(_command(data, out, "--methods", ",".join(methods), "--rounds", "1"),
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        rows[name] = sorted((out / "results.csv").read_text().splitlines()[1:])
    return data, rows


@pytest.mark.slow
def test_every_methods_rows_do_not_depend_on_the_order_methods_run_in(every_method_rows):
    """Each stage seeds itself from (seed, stage, ...) through `seeding`: running every method forwards and
    backwards gives every method identical rows (before, FedMM's codes depended on the CTR stages run
    before them)."""
    from tff_fedmm.pipelines.compare_names import METHODS

    _, rows = every_method_rows
    assert len(rows["forwards"]) == len(METHODS) * 2 and rows["forwards"] == rows["backwards"]


@pytest.mark.slow
def test_a_methods_result_does_not_depend_on_the_methods_run_before_it(every_method_rows, tmp_path):
    """`fedmm-level1-only` trains a CTR stage (which moves TensorFlow's global seed) before FedMM's codes
    are learned; FedMM's rows must be those of `--methods fedmm` alone. (Markets of more RQ-VAE rows than one
    batch, as above: on the 40-user markets the two orders happened to agree even before the fix.) Compared
    with the forwards run above, where FedMM comes after every other method."""
    from tff_fedmm.pipelines.compare_names import METHODS

    assert METHODS[-1] == "fedmm"  # forwards, every other method ran before FedMM
    data, rows = every_method_rows
    out = tmp_path / "fedmm"
    done = subprocess.run(_command(data, out, "--methods", "fedmm", "--rounds", "1"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    alone = sorted(line for line in (out / "results.csv").read_text().splitlines() if line.startswith("0,fedmm,"))
    assert alone and alone == [line for line in rows["forwards"] if line.startswith("0,fedmm,")]
