"""`fedmm compare` / `fedmm run` / `tasks/local_baseline.py` end to end on tiny markets: the files a run
writes, one-line errors for bad flags, and no TFF worker left behind (clean exit, piped, or SIGKILL)."""

from __future__ import annotations

import csv
import ctypes
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    REPO_ROOT, SEEDS_RUN, TINY_RUN_BACKBONES, TINY_RUN_METHODS, TINY_RUN_ROUNDS, TINY_RUN_SEED, small_market_files,
)

from tff_fedmm.cli import main

psutil = pytest.importorskip("psutil")

RESULT_COLUMNS = ["seed", "method", "backbone", "market", "auc", "logloss", "hr@10", "ndcg@10", "hr@10_full",
                  "ndcg@10_full", "recall@20_full", "auc_held_out", "alignment", "schema_version"]
LOCAL_COLUMNS = [*RESULT_COLUMNS[1:-2], "schema_version"]
MARKETS = ("aa", "bb")
# Ranking evaluation draws 99 distinct never-interacted items per user, so a market needs > 99 + 6 items.
USERS, ITEMS, PER_USER = 40, 110, 6
PIPE_TIMEOUT_S = 240


def tiny_market_files() -> dict[str, str]:
    """Two markets of 40 users with 6 dated interactions each over the same 110 item IDs."""
    return small_market_files(MARKETS, USERS, ITEMS, PER_USER)


def fedmm_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tff_fedmm", *args]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def audited(out: Path, stage: str) -> tuple[list[str], list[str]]:
    """A stage's entry in the run's privacy_audit.json: the names of the values that cross, their sources."""
    entry = json.loads((out / "privacy_audit.json").read_text())["stages"][stage]
    values = [v for c in entry["crossings"] for v in c["values"]]
    return [v["value"] for v in values], [s for v in values for s in v["sources"]]


# --- end to end ----------------------------------------------------------------------------------------


def _compare(data: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    """`fedmm compare` on DeepFM for 1 round into `out`; asserts success, showing its stderr if not."""
    log = out.with_name(f"{out.name}-stderr.txt")
    with log.open("w") as err:
        result = subprocess.run(fedmm_cmd("compare", "--data", str(data), "--backbones", "deepfm", "--rounds", "1",
                                          "--out", str(out), *flags),
                                cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=err, text=True, timeout=600)
    assert result.returncode == 0, tail(log)
    return result


@pytest.mark.slow
def test_compare_writes_a_complete_run_folder(tiny_run):
    out = tiny_run.out  # conftest's shared run: TINY_RUN_METHODS on TINY_RUN_BACKBONES
    columns, rows = read_csv(out / "results.csv")
    assert columns == RESULT_COLUMNS
    keys = [(r["method"], r["backbone"], r["market"]) for r in rows]
    expected = {(m, b, k) for m in TINY_RUN_METHODS for b in TINY_RUN_BACKBONES for k in MARKETS}
    assert len(keys) == len(expected) and set(keys) == expected
    for row in rows:
        assert 0.0 <= float(row["auc"]) <= 1.0 and float(row["logloss"]) > 0.0
        assert 0.0 <= float(row["ndcg@10"]) <= float(row["hr@10"]) <= 1.0
        assert 0.0 <= float(row["ndcg@10_full"]) <= float(row["hr@10_full"]) <= float(row["recall@20_full"]) <= 1.0
        # 99 sampled negatives are a subset of the full catalogue's: the sampled rank can only be better.
        assert float(row["hr@10_full"]) <= float(row["hr@10"])
        if row["method"] in ("local", "fedavg", "centralized-anchored"):
            assert row["alignment"] == "", row
        else:
            assert 0.0 <= float(row["alignment"]) <= 1.0, row
    for name in ("results.md", "history.csv", "config.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not (out / "INCOMPLETE").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["command"]["rounds"] == TINY_RUN_ROUNDS and config["config"]["codes"]["rounds"] == TINY_RUN_ROUNDS
    assert "fedmm" in tiny_run.stdout
    # Every federated process the run built, audited by identity: what crosses, and from which variable.
    audit = json.loads((out / "privacy_audit.json").read_text())
    assert set(audit["stages"]) == {"codes-federated-codebooks-local-cf-aa-bb",
                                    *(f"codes-private-codebooks-local-cf-{k}" for k in MARKETS),
                                    *(f"ctr-{m}-{b}" for m in ("fedmm", "fedavg") for b in TINY_RUN_BACKBONES)}
    assert all(entry["seeds"] == [TINY_RUN_SEED] for entry in audit["stages"].values())
    assert set(audit["methods_without_a_federated_process"]) == {"local", "local+codes", "centralized-anchored"}
    assert audit["audit_seconds"] > 0
    values, sources = audited(out, "codes-federated-codebooks-local-cf-aa-bb")
    assert "codebook_update" in values and "update of shared_global_codebook/codebook" in " ".join(sources)
    values, sources = audited(out, "ctr-fedmm-deepfm")
    assert "update of shared_item_global_code_embedding/embeddings (received minus trained)" in sources
    assert not [s for s in sources if "private_" in s], "a private variable crosses in fedmm's CTR stage"
    _, sources = audited(out, "ctr-fedavg-deepfm")  # FedAvg shares the ID embeddings: named as such
    assert "update of private_user_id_embedding/embeddings (received minus trained)" in sources


@pytest.mark.slow
def test_anchored_mode_runs_end_to_end_and_is_recorded(market_dir, tmp_path):
    data = market_dir(tiny_market_files())
    out = tmp_path / "run"
    methods = ("fedmm", "fedper-anchored", "centralized", "centralized-anchored")
    _compare(data, out, "--methods", ",".join(methods), "--anchors", "public-items", "--anchor-weight", "2")
    _, rows = read_csv(out / "results.csv")
    assert {(r["method"], r["market"]) for r in rows} == {(m, k) for m in methods for k in MARKETS}
    assert all(0.0 <= float(r["auc"]) <= 1.0 and 0.0 <= float(r["auc_held_out"]) <= 1.0 for r in rows)
    by = {(r["method"], r["market"]): r for r in rows}  # the anchor rows change the pooled model
    assert any(by["centralized", k]["auc"] != by["centralized-anchored", k]["auc"] for k in MARKETS)
    codes = json.loads((out / "config.json").read_text())["config"]["codes"]
    assert codes["anchors"] == "public-items" and codes["codebook"]["anchor_weight"] == 2.0
    # alignment is scored on the held-out recurring items only: 30% of the 110 shared item IDs
    _, report = read_csv(out / "codebooks.csv")
    assert {int(r["aligned_pairs"]) for r in report if r["codes"] == "federated-codebooks-local-cf"} == {33}
    values, sources = audited(out, "codes-federated-codebooks-local-cf-aa-bb")  # the per-anchor aggregates
    assert values[:3] == ["codebook_update", "anchor_means", "anchor_counts"]
    assert any(s.startswith("payload/anchor_means (per anchor slot: mean level-1 latent") for s in sources)
    _, sources = audited(out, "ctr-fedper-anchored-deepfm")
    assert "update of shared_item_global_code_embedding/embeddings (received minus trained)" in sources
    assert not [s for s in sources if "private_" in s]


@pytest.mark.slow
def test_two_seeds_write_both_and_a_confidence_interval(market_dir, tmp_path, seeds_run):
    data = market_dir(tiny_market_files())
    out = tmp_path / "seeds"
    assert SEEDS_RUN[-2:] == ["--jobs", "2"]
    sequential = SEEDS_RUN[:-2]  # the same seeds one after the other, in one process
    result = subprocess.run(fedmm_cmd(*sequential, "--data", str(data), "--out", str(out)),
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    _, rows = read_csv(out / "results.csv")
    assert sorted({r["seed"] for r in rows}) == ["0", "1"] and len(rows) == 2 * 2 * len(MARKETS)
    seed_rows = {s: [(r["method"], r["market"], r["auc"]) for r in rows if r["seed"] == s] for s in ("0", "1")}
    assert seed_rows["0"] != seed_rows["1"]  # training differs between seeds
    assert json.loads((out / "config.json").read_text())["seeds"] == [0, 1]
    assert {p.name for p in (out / "checkpoints").glob("seed*-ctr-fedper-deepfm.npz")} == {
        "seed0-ctr-fedper-deepfm.npz", "seed1-ctr-fedper-deepfm.npz"}
    report = (out / "results.md").read_text()
    assert "±" in report and "paired difference to local" in report and "over 2 training seed(s)" in report
    audit = (out / "privacy_audit.json").read_text()
    assert json.loads(audit)["stages"]["ctr-fedper-deepfm"]["seeds"] == [0, 1]  # the seeds' processes are one
    # A resumed run finds every stage of both seeds done and writes the same results.
    before = (out / "results.csv").read_text()
    again = subprocess.run(fedmm_cmd(*sequential, "--data", str(data), "--out", str(out), "--resume"),
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "results.csv").read_text() == before
    assert json.loads((out / "privacy_audit.json").read_text())["stages"] == json.loads(audit)["stages"]
    # The same seeds side by side, one process each (--jobs 2: conftest's shared run), give the same rows.
    assert "Traceback" not in seeds_run.stderr
    assert (seeds_run.out / "results.csv").read_text() == before
    assert json.loads((seeds_run.out / "privacy_audit.json").read_text())["stages"] == json.loads(audit)["stages"]


@pytest.mark.slow
def test_local_baseline_task_writes_local_and_local_codes(market_dir, tmp_path):
    data = market_dir(tiny_market_files())
    out, log = tmp_path / "local", tmp_path / "stderr.txt"
    with log.open("w") as err:
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "tasks" / "local_baseline.py"), "--data", str(data),
             "--backbone", "deepfm", "--rounds", "1", "--out", str(out)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=err, text=True, timeout=600)
    assert result.returncode == 0, tail(log)
    columns, rows = read_csv(out / "results.csv")
    assert columns == LOCAL_COLUMNS
    keys = [(r["method"], r["backbone"], r["market"]) for r in rows]
    assert sorted(keys) == sorted((m, "deepfm", k) for m in ("local", "local+codes") for k in MARKETS)
    assert not (out / "INCOMPLETE").exists()


# --- bad flags -----------------------------------------------------------------------------------------


def load_local_baseline():
    spec = importlib.util.spec_from_file_location("local_baseline_task", REPO_ROOT / "tasks" / "local_baseline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["compare", "--methods", "local,bogus", "--backbones", "deepfm"], "--methods: unknown 'bogus'"),
        (["compare", "--methods", "local", "--backbones", "resnet"], "--backbones: unknown 'resnet'"),
        (["run", "--backbone", "resnet"], "--backbone: unknown 'resnet'"),
        (["compare", "--methods", "local", "--backbones", "deepfm", "--rounds", "0"], "--rounds: expected a positive"),
        (["run", "--rounds", "0"], "--rounds: expected a positive"),
        (["compare", "--methods", "local", "--backbones", "deepfm", "--markets", "aa,zz"], "no market 'zz'"),
        (["run", "--markets", "zz"], "no market 'zz'"),
        (["compare", "--methods", "local", "--backbones", "deepfm", "--out", "{file}/run"], "--out: cannot write"),
        (["run", "--out", "{file}/run"], "--out: cannot write"),
        (["compare", "--methods", "local", "--backbones", "deepfm", "--seeds", "0,x"], "--seeds: expected comma-separated integers"),
        (["compare", "--methods", "local", "--backbones", "deepfm", "--seeds", "1,1"], "--seeds: expected distinct"),
        (["run", "--seed", "1", "--seeds", "0,1"], "not allowed with argument"),
        (["run", "--jobs", "0"], "--jobs: expected a positive number"),
        (["run", "--jobs", "2", "--workers", "localhost:1"], "--jobs: seeds in parallel processes use local"),
        (["run", "--anchors", "all"], "--anchors: invalid choice"),
        (["run", "--anchors", "public-items", "--level1", "descriptors"], "use it with --level1 encoder"),
        (["run", "--anchors", "public-items", "--anchor-weight", "-1"], "--anchor-weight: expected a weight >= 0"),
        (["baseline", "--backbone", "resnet"], "--backbone: expected deepfm, dcnv2"),
        (["baseline", "--markets", "zz"], "no market 'zz'"),
        (["baseline", "--out", "{file}/run"], "--out: cannot write"),
        (["baseline", "--rounds", "0"], "--rounds: expected a positive"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_flags_are_one_line_and_status_2(market_dir, tmp_path, capsys, argv, fragment):
    data = market_dir(tiny_market_files())
    regular_file = tmp_path / "a_file"
    regular_file.write_text("not a folder\n")
    out = tmp_path / "out"
    argv = [a.format(file=regular_file) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    argv += ["--data", str(data)]
    if argv[0] == "baseline":
        status = load_local_baseline().main(argv[1:])
    else:
        status = main(argv)
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert status == 2
    assert captured.out == ""
    assert len(err) == 1 and err[0].startswith("fedmm: error: "), err
    assert fragment in err[0]
    assert "Traceback" not in captured.err
    assert not out.exists(), "a rejected command left a run folder behind"


# --- no orphan workers ---------------------------------------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


def is_worker(proc) -> bool:
    try:
        return proc.name() == "worker_binary" or any("worker_binary" in part for part in proc.cmdline()[:1])
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def alive(proc) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def worker_descendants(pid: int, since: float = 0.0) -> list:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if is_worker(child) and child.create_time() >= since:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def reap_zombie_children() -> None:
    """Orphans re-parented to us (as subreaper) that died are our zombies: collect them."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def fedavg_command(data: Path, out: Path) -> list[str]:
    return fedmm_cmd("compare", "--data", str(data), "--methods", "fedavg", "--backbones", "deepfm",
                     "--rounds", "1", "--out", str(out))


@pytest.fixture
def subreaper():
    """Orphans of our children are re-parented to this process while the test runs, so a worker that
    outlives its Python stays visible as our descendant (instead of vanishing under init)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_CHILD_SUBREAPER is Linux-only")
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    assert libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        reap_zombie_children()


@pytest.mark.slow
def test_piped_command_leaves_no_worker(market_dir, tmp_path, subreaper):
    data = market_dir(tiny_market_files())
    log = tmp_path / "stderr.txt"
    started = time.time() - 1.0  # create_time has coarse resolution
    seen: dict[int, object] = {}
    with log.open("w") as err:
        # Exactly `fedmm compare ... | cat`: stdout is a pipe read to EOF, stderr is not piped.
        proc = subprocess.Popen(fedavg_command(data, tmp_path / "run"), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL)
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
        reader.start()
        deadline = time.monotonic() + PIPE_TIMEOUT_S
        try:
            while reader.is_alive() and time.monotonic() < deadline:
                for w in worker_descendants(proc.pid, started):
                    seen.setdefault(w.pid, w)
                reader.join(timeout=0.1)
            eof = not reader.is_alive()
            status = proc.wait(timeout=60) if eof else None
            time.sleep(2.0)
            reap_zombie_children()
            survivors = [w for w in worker_descendants(os.getpid(), started) if w.pid != os.getpid()]
            survivors += [w for w in seen.values() if alive(w) and w not in survivors]
        finally:
            leftovers = [w for w in seen.values() if alive(w)] + worker_descendants(os.getpid(), started)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for w in leftovers:  # only workers our own command started
                try:
                    w.kill()
                except psutil.NoSuchProcess:
                    pass
    assert eof, f"stdout never reached EOF within {PIPE_TIMEOUT_S}s: something still holds the pipe"
    assert status == 0, tail(log)
    assert b"fedavg" in b"".join(chunks)
    assert seen, "the command never started a worker_binary: the check above proved nothing"
    assert not survivors, f"worker_binary outlived its command: {[w.pid for w in survivors]}"


@pytest.mark.slow
def test_sigkill_of_python_takes_the_worker_down(market_dir, tmp_path, subreaper):
    data = market_dir(tiny_market_files())
    log = tmp_path / "stderr.txt"
    started = time.time() - 1.0
    with log.open("w") as err:
        proc = subprocess.Popen(fedavg_command(data, tmp_path / "run"), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                stderr=err, stdin=subprocess.DEVNULL)
    workers: list = []
    try:
        deadline = time.monotonic() + 180
        while not workers and proc.poll() is None and time.monotonic() < deadline:
            workers = worker_descendants(proc.pid, started)
            time.sleep(0.05)
        assert workers, f"no worker_binary appeared under the command (status {proc.poll()}):\n{tail(log)}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 5.0
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [w.pid for w in workers if alive(w)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:
            if alive(w):
                w.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not survivors, f"worker_binary {survivors} survived SIGKILL of its Python (no PR_SET_PDEATHSIG?)"
