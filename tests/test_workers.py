"""Remote execution on TFF workers: `fedmm worker`, `--workers host:port,...`, and the mergeable context.

The pytest process keeps its own installed local context (conftest's `tff_context`): runs through
workers happen in subprocesses, and the in-process tests below use a context they build with
`context.connect` without installing it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, small_market_files
from test_cli_compare import fedmm_cmd, tail

from tff_fedmm.cli import main
from tff_fedmm.federated import context
from tff_fedmm.federated import workers as wk

psutil = pytest.importorskip("psutil")

# Three markets, so that two workers get uneven slices ([aa, bb] and [cc]) and client states must come
# back in argument order. Ranking evaluation draws 99 never-interacted items per user: > 105 items.
MARKETS = ("aa", "bb", "cc")
USERS, ITEMS, PER_USER = 40, 110, 6
RUN_ARGS = ("compare", "--methods", "fedmm,fedavg", "--backbones", "deepfm", "--rounds", "2", "--quiet")
RUN_TIMEOUT_S = 300

# Two workers run exactly the single-process computations: the same TF graphs and seeds, lossless gRPC
# transfers, and (one client per subround, partial aggregates merged in client order) the same
# left-to-right float32 sums over clients as one worker — measured bit-identical: equal CSVs and
# byte-equal checkpoints. The tolerance below only allows for last-bit differences should TFF's runtime
# sum in another order (the default `per_client=False` mode reassociates the sums: ~1e-7 relative in the
# aggregates; 2 rounds of training keep that well below 1e-4 on this data), relative to values such as
# losses of ~100; anything wrong in how clients are split and re-assembled (e.g. a market's state
# trained on another market's data moved AUC by ~4e-2) is orders of magnitude larger.
TOLERANCE = 1e-4


def three_market_files() -> dict[str, str]:
    return small_market_files(MARKETS, USERS, ITEMS, PER_USER)


def is_worker_binary(proc) -> bool:
    try:
        return proc.name() == "worker_binary" or any("worker_binary" in part for part in proc.cmdline()[:1])
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def alive(proc) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def worker_binaries_under(pid: int) -> list:
    try:
        return [c for c in psutil.Process(pid).children(recursive=True) if is_worker_binary(c)]
    except psutil.NoSuchProcess:
        return []


# --- the --workers flag: fast, nothing is started ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("127.0.0.1", "is not host:port"),
        ("host:port", "port 'port' is not an integer"),
        ("host:0", "outside 1-65535"),
        ("host:70000", "outside 1-65535"),
        ("a:1,a:1", "listed twice"),
        (",", "empty"),
        ("::1:8000", "IPv6 hosts go in brackets"),
        (":8000", "is not host:port"),
    ],
)
def test_bad_workers_value_is_one_line_and_status_2(tmp_path, capsys, value, fragment):
    out = tmp_path / "out"
    status = main(["run", "--workers", value, "--out", str(out)])
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("fedmm: error: argument --workers: "), err
    assert fragment in err[0]
    assert not out.exists()


def test_workers_are_parsed_and_api_errors_name_the_flag():
    assert wk.parse_workers("10.0.0.5:10000, host-b:10001,[::1]:9") == ["10.0.0.5:10000", "host-b:10001",
                                                                          "[::1]:9"]
    assert wk.parse_workers(["h:1", "h:2"]) == ["h:1", "h:2"]
    with pytest.raises(wk.UsageError, match="^--workers: "):
        context.install_execution_context("no-port")  # rejected before anything is connected or installed


def test_bad_worker_timeout_is_a_usage_error(monkeypatch):
    monkeypatch.setenv(wk.WORKER_TIMEOUT_ENV, "soon")
    with pytest.raises(wk.UsageError, match=wk.WORKER_TIMEOUT_ENV):
        wk.worker_timeout()
    monkeypatch.setenv(wk.WORKER_TIMEOUT_ENV, "2.5")
    assert wk.worker_timeout() == 2.5


def test_bad_worker_port_is_one_line_and_status_2(capsys):
    assert main(["worker", "--port", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--port" in err[0], err


def test_worker_on_a_busy_port_is_one_line_and_status_2(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["worker", "--port", str(port)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"--port: port {port} is already in use" in err[0], err


def test_unreachable_worker_is_one_line_naming_it(market_dir, tmp_path):
    data = market_dir(three_market_files())
    address = f"127.0.0.1:{wk.free_port()}"  # nothing listens there
    out = tmp_path / "run"
    started = time.monotonic()
    proc = subprocess.run(fedmm_cmd(*RUN_ARGS, "--data", str(data), "--out", str(out), "--workers", address),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, wk.WORKER_TIMEOUT_ENV: "2"})
    elapsed = time.monotonic() - started
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fedmm")]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(errors) == 1 and errors[0].startswith("fedmm: error: --workers: cannot reach TFF worker"), errors
    assert address in errors[0] and "fedmm worker --port" in errors[0]
    assert elapsed < 60, f"took {elapsed:.0f}s: the readiness timeout (2s) was not honoured"
    assert not out.exists(), "an unreachable worker left a run folder behind"


# --- the mergeable context, in process (built with connect(), never installed) -------------------------


@pytest.fixture(scope="module")
def two_local_workers():
    workers = [wk.start_worker(), wk.start_worker()]
    yield workers
    for worker in workers:
        worker.stop()


def _doubled_and_sum():
    import tensorflow_federated as tff

    @tff.tensorflow.computation(np.int32)
    def double(x):
        return x * 2

    @tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
    def doubled_and_sum(xs):
        return tff.federated_map(double, xs), tff.federated_sum(xs)

    return doubled_and_sum


@pytest.mark.slow
@pytest.mark.parametrize("per_client", [True, False], ids=["client-per-subround", "slice-per-worker"])
def test_two_workers_keep_clients_in_argument_order(two_local_workers, per_client):
    ctx = context.connect([w.address for w in two_local_workers], timeout_s=10, per_client=per_client)
    comp = _doubled_and_sum()
    values = list(range(7))  # per worker: slices [0..3] and [4..6], the bigger one usually finishes last
    for _ in range(3):
        doubled, total = ctx.invoke(comp, values)
        assert [int(v) for v in doubled] == [2 * v for v in values]
        assert int(total) == sum(values)


@pytest.mark.slow
def test_a_lost_worker_fails_with_its_address_not_forever():
    workers = [wk.start_worker(), wk.start_worker()]
    try:
        ctx = context.connect([w.address for w in workers], timeout_s=2)
        comp = _doubled_and_sum()
        assert int(ctx.invoke(comp, [1, 2, 3])[1]) == 6
        workers[1].stop()
        started = time.monotonic()
        with pytest.raises(wk.WorkerUnavailableError, match=f"lost TFF worker {workers[1].address}"):
            ctx.invoke(comp, [1, 2, 3])
        # 2 s unreachable, plus TFF's exponential retry backoff (doubling from 1 ms) overshooting it.
        assert time.monotonic() - started < 30
    finally:
        for worker in workers:
            worker.stop()


# --- end to end: `fedmm worker` x 2, a run through them, the same results, no orphan -------------------


def _start_fedmm_worker(port: int, log: Path) -> tuple[subprocess.Popen, str]:
    """`fedmm worker --port PORT` as the README says; returns it once it printed its address line."""
    with log.open("w") as err:
        proc = subprocess.Popen(fedmm_cmd("worker", "--port", str(port)), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            return proc, proc.stdout.readline()
    raise AssertionError(f"`fedmm worker --port {port}` printed no address line (status {proc.poll()}):\n"
                         f"{tail(log)}")


def _numeric_frames(folder: Path, name: str, keys: list[str]) -> pd.DataFrame:
    frame = pd.read_csv(folder / name)
    return frame.sort_values(keys).reset_index(drop=True)


def _max_difference(single: Path, two: Path) -> dict[str, float]:
    """Per table the run writes: max |single - two| and max |single - two| / max(1, |single|) over every
    numeric column (rows matched by their keys)."""
    tables = {"results.csv": ["method", "backbone", "market"], "history.csv": ["method", "backbone", "round", "market"],
              "codebook_history.csv": ["codes", "round"], "codebooks.csv": ["codes", "market"]}
    differences = {}
    for name, keys in tables.items():
        a, b = _numeric_frames(single, name, keys), _numeric_frames(two, name, keys)
        assert a[keys].equals(b[keys]), f"{name}: the two runs have different rows"
        numeric = [c for c in a.columns if c not in keys and a[c].dtype.kind in "fi"]
        x, y = a[numeric].to_numpy(float), b[numeric].to_numpy(float)
        assert np.array_equal(np.isnan(x), np.isnan(y)), f"{name}: NaNs differ"
        relative = np.abs(x - y) / np.maximum(1.0, np.abs(x))
        differences[name] = (float(np.nanmax(np.abs(x - y))) if x.size else 0.0,
                             float(np.nanmax(relative)) if x.size else 0.0)
    return differences


@pytest.mark.slow
def test_two_workers_match_the_single_process_run(market_dir, tmp_path):
    data = market_dir(three_market_files())
    ports = [wk.free_port(), wk.free_port()]
    while ports[1] == ports[0]:
        ports[1] = wk.free_port()
    addresses = [f"127.0.0.1:{p}" for p in ports]
    workers: list[subprocess.Popen] = []
    binaries: list = []
    runs: dict[str, subprocess.Popen] = {}
    try:
        for i, port in enumerate(ports):
            proc, line = _start_fedmm_worker(port, tmp_path / f"worker{i}.log")
            workers.append(proc)
            assert f":{port}" in line and "insecure" in line, line
            binaries += worker_binaries_under(proc.pid)
        assert len(binaries) == 2, "each `fedmm worker` should run one worker_binary"

        # Both runs at once (2 cores): the single-process run on its own local worker, the other on ours.
        for name, extra in (("single", []), ("two", ["--workers", ",".join(addresses)])):
            with (tmp_path / f"{name}.log").open("w") as log:
                runs[name] = subprocess.Popen(fedmm_cmd(*RUN_ARGS, "--data", str(data),
                                                        "--out", str(tmp_path / name), *extra),
                                              cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL)
        own_workers = set()  # worker_binary processes the two-worker run started itself: must stay empty
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while any(p.poll() is None for p in runs.values()) and time.monotonic() < deadline:
            own_workers.update(w.pid for w in worker_binaries_under(runs["two"].pid))
            time.sleep(0.1)
        for name, proc in runs.items():
            assert proc.poll() == 0, f"{name} run: status {proc.poll()}\n{tail(tmp_path / f'{name}.log')}"
        assert not own_workers, "the --workers run started a local worker_binary: some computation bypassed them"

        differences = _max_difference(tmp_path / "single", tmp_path / "two")
        print(f"max |single - two workers| (absolute, relative to max(1, |value|)): {differences}")
        assert max(rel for _, rel in differences.values()) <= TOLERANCE, differences
        config = json.loads((tmp_path / "two" / "config.json").read_text())
        assert config["workers"] == addresses and config["command"]["workers"] == addresses

        # Ctrl-C on each `fedmm worker` stops it (status 130, as a shell reports SIGINT) and its worker.
        for proc in workers:
            proc.send_signal(signal.SIGINT)
        statuses = [proc.wait(timeout=30) for proc in workers]
        assert statuses == [130, 130]
        deadline = time.monotonic() + 5
        while any(alive(b) for b in binaries) and time.monotonic() < deadline:
            time.sleep(0.05)
        orphans = [b.pid for b in binaries if alive(b)]
        assert not orphans, f"worker_binary {orphans} outlived `fedmm worker`"
    finally:
        for proc in [*runs.values(), *workers]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for b in binaries:  # only the binaries our own `fedmm worker`s started
            if alive(b):
                b.kill()


def test_fedmm_worker_help_does_not_import_tensorflow():
    code = ("import sys\nfrom tff_fedmm.cli import main\n"
            "assert main(['worker', '--help']) == 0\n"
            "assert 'tensorflow' not in sys.modules and 'tensorflow_federated' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--port" in proc.stdout and "insecure" in proc.stdout

