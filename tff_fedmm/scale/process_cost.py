"""Wall time, CPU time and peak resident memory of a command together with every process it starts.

`fedmm run` starts its own TFF worker (`worker_binary`), which does most of the federated work, so the cost
of a run is the cost of a process tree, and `time.process_time()` of the caller sees none of it.
- CPU seconds: the change in `getrusage(RUSAGE_CHILDREN)`, which the kernel fills as descendants are
  reaped. This process becomes a child subreaper (`PR_SET_CHILD_SUBREAPER`) so a worker orphaned by its
  run is re-parented here, reaped here, and still counted, instead of vanishing under PID 1.
- Peak RSS: the largest sum of VmRSS over the live tree, sampled from /proc (no kernel counter sums a
  tree), and the kernel's exact high-water mark (VmHWM, `ru_maxrss`) of the largest single process.
- Leftovers: a descendant still alive after the command ended (an orphaned worker) is terminated, reaped
  and counted, so a measurement never leaves a `worker_binary` behind.
Linux only (/proc, prctl); no TensorFlow here, so measuring costs nothing of the measured.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_GRACE_S = 5.0  # a leftover gets this long after SIGTERM before SIGKILL


@dataclass(frozen=True)
class ProcessCost:
    returncode: int
    wall_seconds: float
    cpu_seconds: float  # user + system of the command and all its descendants
    peak_rss_mb: float  # largest sampled sum of resident memory over the tree
    largest_process_rss_mb: float  # kernel high-water mark of the largest single process
    leftovers: int  # descendants alive after the command ended, terminated here


def measure_command(argv: Sequence[str], log: Path, interval_s: float = 0.2,
                    env: dict[str, str] | None = None) -> ProcessCost:
    """Runs `argv` (stdout and stderr to `log`) and measures it and its descendants; the command dies with
    this process (PR_SET_PDEATHSIG), and on an exception here (Ctrl-C) its tree is terminated first."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seen: dict[int, int] = {}  # pid -> start time: a pid the kernel reuses later is another process
    peak_sum = peak_hwm = 0.0
    start = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env=env, preexec_fn=_die_with_parent)
    try:
        while True:
            tree = _tree(child.pid, seen)
            seen.update(tree)
            memory = [_status_mb(pid) for pid in tree]
            peak_sum = max(peak_sum, sum(m[0] for m in memory))
            peak_hwm = max([peak_hwm, *(m[1] for m in memory)])
            try:
                child.wait(timeout=interval_s)
                break
            except subprocess.TimeoutExpired:
                continue
        wall = time.perf_counter() - start
    finally:
        leftovers = _end(child, seen)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    largest = max(peak_hwm, after.ru_maxrss / 1024.0 if after.ru_maxrss > before.ru_maxrss else 0.0)
    return ProcessCost(child.returncode, wall, cpu, peak_sum, largest, leftovers)


def _prctl(option: int, value: int) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _die_with_parent() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every process: fields 4 and 22 of /proc/<pid>/stat
    (the name before them may hold spaces and parentheses, so split after its last ')')."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                found[int(entry.name)] = (int(fields[1]), int(fields[19]))
            except (OSError, IndexError, ValueError):
                continue  # ended while we looked
    return found


def _tree(root: int, seen: dict[int, int]) -> dict[int, int]:
    """`root` and its live descendants, plus the tree's earlier members re-parented to this process
    (orphans), each with its start time."""
    processes, mine = _processes(), os.getpid()
    orphans = [pid for pid, (parent, start) in processes.items() if parent == mine and seen.get(pid) == start]
    found: dict[int, int] = {}
    frontier = [root, *orphans]
    while frontier:
        pid = frontier.pop()
        if pid in processes and pid not in found:
            found[pid] = processes[pid][1]
            frontier.extend(p for p, (parent, _) in processes.items() if parent == pid)
    return found


def _status_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB; zeros if it has ended."""
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.partition(":")[::2] for line in status)
    except OSError:
        return 0.0, 0.0
    rss, hwm = (int(fields.get(key, "0 kB").split()[0]) / 1024.0 for key in ("VmRSS", "VmHWM"))
    return rss, hwm


def _end(child: subprocess.Popen, seen: dict[int, int]) -> int:
    """Terminates the command if it still runs, then every seen descendant still alive; reaps the ones
    re-parented here. Returns how many descendants had to be ended after the command itself."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    processes = _processes()
    leftover = [pid for pid, start in seen.items() if pid != child.pid and processes.get(pid, (0, None))[1] == start]
    for pid in leftover:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_S
    for pid in leftover:
        while alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if alive(pid):
            _signal(pid, signal.SIGKILL)
        _reap(pid, block=True)
    return len(leftover)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    """Whether `pid` is running (a zombie, ended but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _reap(pid: int, block: bool = False) -> None:
    """Collects `pid` if it is our (re-parented) child; nothing if another process is its parent."""
    try:
        os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        pass
