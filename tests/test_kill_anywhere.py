"""Kill it anywhere, resume identically: a run killed (SIGKILL or Ctrl-C) at seeded random moments spread
over the whole run, and once in the middle of a checkpoint save, then resumed with --resume after each kill,
ends with a `results.csv` equal byte for byte to the uninterrupted run's; no resume prints a traceback and
no TFF worker outlives the chain. The chains of `fedmm run` and of a run with DP start with a SIGKILL in the
middle of a chosen federated stage, and end with the uninterrupted run's ε and exports too.

A kill moment is a seeded fraction of the uninterrupted run's wall time, counted from each (re)start, so
kills land in start-up, in every stage and in the final writes alike, whatever the machine's speed. A
mid-save kill waits for a temporary checkpoint entry to appear, freezes the process (SIGSTOP) and kills it
only if the entry is still there, so the save is cut short for certain.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import DP_RUN, PLAIN_RUN, SEEDS_RUN
from test_cli_compare import alive, subreaper, worker_descendants  # noqa: F401 (fixture)
from test_exports import exported, same_exports

KILLS = 4  # per chain: one mid-save kill, the others at random moments (or the first at a chosen stage)
TIMEOUT = 600


def _command(args: list[str], data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tff_fedmm", *args, "--data", str(data), "--out", str(out), *extra]


def _saving(out: Path) -> bool:
    """A save is under way: TFF's temporary round folder or one of our temporary files exists."""
    checkpoints = out / "checkpoints"
    return any(checkpoints.glob("*/round_*_temp*")) or any(checkpoints.glob(".*.tmp*")) or any(out.glob(".*.tmp"))


def _stop(process: subprocess.Popen, sig: int) -> str:
    """Delivers `sig`; returns the process's stderr once it has exited."""
    os.kill(process.pid, sig)
    _, err = process.communicate(timeout=120)
    return err


def _kill_after(path_glob: str, out: Path, process: subprocess.Popen, timeout: float = 400) -> str:
    """SIGKILL once `path_glob` exists under `out` (the run must not have finished before); returns stderr."""
    deadline = time.monotonic() + timeout
    while not list(out.glob(path_glob)):
        assert process.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline, f"no {path_glob} appeared"
        time.sleep(0.2)
    return _stop(process, signal.SIGKILL)


def _kill_at(process: subprocess.Popen, delay: float, sig: int) -> str | None:
    """`sig` after `delay` seconds; None if the run finished first."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        time.sleep(0.05)
    return _stop(process, sig) if process.poll() is None else None


def _kill_mid_save(process: subprocess.Popen, out: Path) -> str | None:
    """SIGKILL while a checkpoint save is half-written; None if the run finished first."""
    while process.poll() is None:
        if _saving(out):
            os.kill(process.pid, signal.SIGSTOP)
            if _saving(out):
                return _stop(process, signal.SIGKILL)
            os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.002)
    return None


def _chain(args: list[str], data: Path, out: Path, straight: float, signals: tuple[int, ...], seed: int,
           reference: str, kills: int = KILLS, first_at: str | None = None) -> list[str]:
    """Runs, kills `kills` times (resuming after each), then resumes to the end; returns each kill's signal
    and moment as text for failure messages. With `first_at` (a checkpoint glob) the first kill is a SIGKILL
    as soon as it exists, so that stage is cut short for certain; then a SIGKILL in the middle of the next
    checkpoint save; then kills at random moments, taking turns through `signals`, as long as the run lasts.
    A killed run must look unfinished unless it had written everything (`reference`: the uninterrupted run's
    results.csv)."""
    rng = random.Random(seed)
    plan = [*(["first"] if first_at else []), "mid-save"]
    plan += ["random"] * (kills - len(plan))
    log = []
    for kill, kind in enumerate(plan):
        extra = ("--resume",) if kill else ()
        process = subprocess.Popen(_command(args, data, out, *extra), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        if kind == "first":
            sig, moment = signal.SIGKILL, f"SIGKILL at {first_at}"
            err = _kill_after(first_at, out, process)
            assert (out / "INCOMPLETE").exists() and not (out / "results.csv").exists()
        elif kind == "mid-save":
            sig, moment = signal.SIGKILL, "mid-save"
            err = _kill_mid_save(process, out)
        else:
            sig, delay = signals[(kill - plan.index("random")) % len(signals)], rng.uniform(0.1, 0.95) * straight
            err, moment = _kill_at(process, delay, sig), f"{signal.Signals(sig).name} at {delay:.1f}s"
        if err is None:  # finished before this kill: nothing more to interrupt
            assert process.returncode == 0, f"kills {log}: run failed"
            break
        log.append(moment)
        assert "Traceback" not in err, f"kills {log}:\n{err[-3000:]}"
        if sig == signal.SIGINT:
            assert process.returncode in (130, -signal.SIGINT), f"kills {log}: exit {process.returncode}\n{err}"
        results = out / "results.csv"
        if results.exists() and not (out / "INCOMPLETE").exists():  # only a run that had written everything
            assert results.read_text() == reference, f"kills {log}: a killed run looks finished"
    done = subprocess.run(_command(args, data, out, "--resume"), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0 and "Traceback" not in done.stderr, f"kills {log}:\n{done.stderr[-3000:]}"
    return log


def _assert_no_live_worker(since: float) -> None:
    """Killed runs' workers die with them (dead ones linger as zombies of the subreaper until reaped)."""
    time.sleep(1)
    assert [w for w in worker_descendants(os.getpid(), since=since) if alive(w)] == []


def _assert_same_run(out: Path, straight: Path, kills: list[str]) -> None:
    """`out` ended as the uninterrupted run `straight`: the same results; the DP charges of the stages
    finished before a kill came back from their checkpoints (the same ε); the stages finished before a kill
    kept the exports they wrote, the ones cut short wrote them again."""
    assert (out / "results.csv").read_text() == (straight / "results.csv").read_text(), f"kills {kills}"
    assert not (out / "INCOMPLETE").exists()
    privacy = [json.loads((folder / "config.json").read_text())["privacy"] for folder in (out, straight)]
    assert privacy[0] == privacy[1], f"kills {kills}"
    assert same_exports(exported(out), exported(straight)), f"kills {kills}"


# The uninterrupted runs are conftest's `plain_run` and `dp_run`. Each chain first kills a federated stage
# once it has saved a round: `fedmm run`'s FedMM CTR stage (the codes stage finished, local and FedAvg not
# started); with DP, secure sums and drop-out, the federated codebook stage (the DP noise seed and the state
# of market 0, absent from its first round, must come back from the checkpoint). The random kills after the
# mid-save one take turns between Ctrl-C (SIGINT) and SIGKILL.
@pytest.mark.slow
def test_fedmm_run_killed_anywhere_resumes_to_the_same_results(plain_run, tmp_path, subreaper):
    launched = time.time()
    out = tmp_path / "killed"
    expected = (plain_run.out / "results.csv").read_text()
    kills = _chain(PLAIN_RUN, plain_run.data, out, plain_run.seconds, (signal.SIGINT, signal.SIGKILL), seed=26,
                   reference=expected, first_at="checkpoints/seed0-ctr-fedmm-deepfm/round_1")
    _assert_same_run(out, plain_run.out, kills)
    _assert_no_live_worker(launched)


@pytest.mark.slow
def test_compare_with_dp_and_secure_sums_killed_anywhere_resumes_to_the_same_results(dp_run, tmp_path, subreaper):
    launched = time.time()
    out = tmp_path / "killed"
    expected = (dp_run.out / "results.csv").read_text()
    kills = _chain(DP_RUN, dp_run.data, out, dp_run.seconds, (signal.SIGINT, signal.SIGKILL), seed=29,
                   reference=expected, first_at="checkpoints/seed5-codes-federated-*/round_1")
    _assert_same_run(out, dp_run.out, kills)
    _assert_no_live_worker(launched)


@pytest.mark.slow
def test_seeds_in_parallel_processes_killed_anywhere_resume_to_the_same_results(seeds_run, tmp_path, subreaper):
    """`--jobs 2` (conftest's `seeds_run`): killing the parent takes its seed processes and their workers
    down with it. SIGKILL only (Ctrl-C ends the parent through the same `os._exit`; the seed processes ignore
    SIGINT); two kills, one mid-save and one at a random moment, on a short run (the chains above cover the
    stages themselves)."""
    launched = time.time()
    expected = (seeds_run.out / "results.csv").read_text()
    kills = _chain(SEEDS_RUN, seeds_run.data, tmp_path / "killed", seeds_run.seconds, (signal.SIGKILL,), seed=31,
                   reference=expected, kills=2)
    assert (tmp_path / "killed" / "results.csv").read_text() == expected, f"kills {kills}"
    _assert_no_live_worker(launched)
    time.sleep(1)
    orphans = [p for p in psutil.Process().children(recursive=True) if alive(p) and p.create_time() >= launched]
    assert orphans == [], f"kills {kills}: seed processes outlived their parent: {[p.cmdline() for p in orphans]}"
