"""Shared fixtures. Data files for tests are written to tmp_path; the real data is never copied here."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from tff_fedmm.data.loading import RawMarket

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "xmarket-electronics"

HEADER = "userId itemId rate date"
TINY_MARKETS = ("aa", "bb")


def valid_lines(users: int = 3, items_per_user: int = 4) -> list[str]:
    """Data lines for a small market every user of which can be split."""
    return [
        f"u{u} i{(u + k) % 7} {1 + (u + k) % 5}.0 2020-01-{k + 1:02d}"
        for u in range(users)
        for k in range(items_per_user)
    ]


def raw_market(rows: list[tuple[str, str, str]], name: str = "de") -> RawMarket:
    frame = pd.DataFrame(rows, columns=["userId", "itemId", "date"])
    frame["rate"] = np.float32(5.0)
    frame["date"] = pd.to_datetime(frame["date"])
    return RawMarket(name=name, frame=frame[["userId", "itemId", "rate", "date"]], source="test", duplicates_dropped=0)


def small_market_files(markets, users: int = 40, items: int = 110, per_user: int = 6) -> dict[str, str]:
    """Markets of `users` users with `per_user` dated interactions each over the same `items` item IDs
    (so real-data alignment, which pairs identical raw IDs, has pairs to score). Ranking evaluation draws
    99 never-interacted items per user, so `items` must exceed 99 + `per_user`."""
    files = {}
    for m, name in enumerate(markets):
        lines = [HEADER]
        for u in range(users):
            for k in range(per_user):
                item = (u * per_user + k + 7 * m) % items
                lines.append(f"{name}u{u} i{item} {1 + (u + k) % 5}.0 2020-01-{k + 1:02d}")
        files[f"{name}_5core.txt"] = "\n".join(lines) + "\n"
    return files


# The files that take minutes (end-to-end runs in subprocesses), longest first: estimated from a CI run's
# `--durations` and the runs each file now makes, a shared run counted in the file that builds it first
# (`plain_run` and `dp_run` in test_kill_anywhere.py, `tiny_run` in test_cli_compare.py). `make test` runs
# pytest-xdist with --dist loadfile --no-loadscope-reorder, which hands whole files to the workers in
# collection order: started first, the long files end while the short ones fill the other worker's time,
# instead of a worker ending the suite alone on a long file (xdist's own order is by number of tests, which
# queued these last).
LONG_FILES = ("test_kill_anywhere.py", "test_cli_compare.py", "test_tasks.py", "test_scale.py", "test_resume.py",
              "test_privacy_options.py", "test_scarce_market.py", "test_workers.py", "test_notebook.py",
              "test_anchored_mode.py", "test_distributed_dp.py", "test_dp_all_stages.py", "test_dp_sgd.py",
              "test_bench.py", "test_audit_identity.py", "test_rqvae.py", "test_exports.py", "test_privacy_attack.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


@pytest.fixture
def market_dir(tmp_path: Path) -> Callable[..., Path]:
    """Writes `{file name: text}` into a fresh directory and returns it."""

    def write(files: dict[str, str]) -> Path:
        directory = tmp_path / "data"
        directory.mkdir(exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text)
        return directory

    return write


@pytest.fixture(scope="session")
def synthetic_set():
    from tff_fedmm.data.markets import load_markets

    return load_markets("synthetic")


@pytest.fixture(scope="session")
def tff_context():
    """The project's TFF execution context (an owned, PDEATHSIG'd worker), installed once per session.

    Every test that executes a TFF computation uses this, so TFF never starts a worker of its own.
    """
    from tff_fedmm.federated import context

    context.install_execution_context()
    yield
    worker = context._state.get("worker")
    if worker is not None:  # atexit would stop it too; stopping here keeps `pgrep worker_binary` clean sooner
        worker.stop()


class FinishedRun(NamedTuple):
    """A finished `fedmm` command on the two tiny markets (`shared_run`)."""

    out: Path  # the run folder
    data: Path  # the markets it trained on
    stdout: str  # what the command printed
    stderr: str
    seconds: float  # its wall time (the kill-anywhere chains spread their kills over it)


def shared_run(tmp_path_factory, name: str, args: list[str]) -> FinishedRun:
    """`fedmm ARGS --data D --out O` on the two tiny markets, run once per test run and shared by every test
    that compares against it or only reads its folder (training costs far more than the reads). Under
    pytest-xdist the first worker to ask runs it while the others wait on a file lock. Tests must not write
    into it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder all workers of this test run share
    folder = root / name
    out, data, done = folder / "run", folder / "data", folder / "stdout.txt"
    err, seconds = folder / "stderr.txt", folder / "seconds.txt"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left: start again
            data.mkdir(parents=True)
            for file, text in small_market_files(TINY_MARKETS, 40, 110, 6).items():
                (data / file).write_text(text)
            command = [sys.executable, "-m", "tff_fedmm", *args, "--data", str(data), "--out", str(out)]
            started = time.monotonic()
            result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, result.stderr[-3000:]
            seconds.write_text(f"{time.monotonic() - started:.3f}")
            err.write_text(result.stderr)
            done.write_text(result.stdout)  # last: its presence says the run finished
    return FinishedRun(out, data, done.read_text(), err.read_text(), float(seconds.read_text()))


# Every kind of export (shared and private codebooks, none, offsets) and a method without any, on both
# backbones; the seed is not the default, so tests can check that the run's own seed is the one recorded.
TINY_RUN_METHODS = ("local", "fedmm", "local+codes", "fedavg", "centralized-anchored")
TINY_RUN_BACKBONES = ("deepfm", "dcnv2")
TINY_RUN_SEED, TINY_RUN_ROUNDS = 3, 1


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> FinishedRun:
    """One finished `fedmm compare` of TINY_RUN_METHODS on both backbones, shared by the tests that only
    read a finished run folder (each used to train its own)."""
    return shared_run(tmp_path_factory, "tiny_run", [
        "compare", "--methods", ",".join(TINY_RUN_METHODS), "--backbones", ",".join(TINY_RUN_BACKBONES),
        "--rounds", str(TINY_RUN_ROUNDS), "--seed", str(TINY_RUN_SEED)])


# The uninterrupted runs the kill-anywhere chains (test_kill_anywhere.py) compare against. `fedmm run`:
# FedMM, local and FedAvg. With DP, secure sums and drop-out (also test_privacy_options.py's reproducible DP
# run): FedPer and FedMM, the DP noise reproducible (`--dp-noise-seed`: secret noise differs between any two
# runs); with seed 5, market 0 is absent from codebook round 1 and both markets from round 2. Two rounds: a
# kill at a stage's first saved round still leaves a round of it to do.
PLAIN_RUN = ["run", "--rounds", "2", "--quiet"]
DP_RUN = ["compare", "--methods", "fedper,fedmm", "--backbones", "deepfm", "--rounds", "2", "--quiet",
          "--dp-noise-multiplier", "1.0", "--dp-clip", "0.5", "--secure-agg", "--dropout-rate", "0.3",
          "--seed", "5", "--dp-noise-seed", "11"]


# Two seeds side by side, one process each: test_cli_compare.py checks it gives the rows of the seeds run
# one after the other; test_kill_anywhere.py kills it.
SEEDS_RUN = ["compare", "--methods", "local,fedper", "--backbones", "deepfm", "--rounds", "1", "--quiet",
             "--seeds", "0,1", "--jobs", "2"]


@pytest.fixture(scope="session")
def seeds_run(tmp_path_factory) -> FinishedRun:
    return shared_run(tmp_path_factory, "seeds_run", SEEDS_RUN)


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory) -> FinishedRun:
    return shared_run(tmp_path_factory, "plain_run", PLAIN_RUN)


@pytest.fixture(scope="session")
def dp_run(tmp_path_factory) -> FinishedRun:
    return shared_run(tmp_path_factory, "dp_run", DP_RUN)
