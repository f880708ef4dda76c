"""What the kernel says about this process and the TFF worker: resident memory and CPU time.

CPU seconds complement wall seconds because the machine is shared: another user's job stretches a
round's wall time but not the CPU time our two processes spend on it. A round's CPU cost is this
Python process's (all threads) plus the `worker_binary`'s, which runs the TensorFlow work.
"""

from __future__ import annotations

import os
import time

from tff_fedmm.federated import context

_TICKS = os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of `pid` in MB (from /proc/<pid>/status, which reports kB)."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024.0
    return values


def worker_pid() -> int | None:
    """The local `worker_binary` that `federated.context` started and owns (None with remote workers)."""
    worker = context._state.get("worker")
    process = getattr(worker, "process", None)
    return process.pid if process is not None and process.poll() is None else None


def cpu_seconds() -> float:
    """CPU seconds so far of this process plus the owned worker's, if any (user + system: fields 14 and 15 of
    /proc/<pid>/stat)."""
    pid = worker_pid()
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 is fields[0]
    return time.process_time() + (int(fields[11]) + int(fields[12])) / _TICKS
