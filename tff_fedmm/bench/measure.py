"""How every figure measures: wall and CPU seconds, resident memory, upload bytes, interleaved timed rounds,
medians, a line fit.

CPU seconds are this process's plus the owned TFF worker's (from /proc): the cost, which others' load on a
shared machine barely moves. Rounds are interleaved: load drifts, and alternating the processes round by round
puts them under the same drift. Medians: one slow round (garbage collection, another job) moves no figure.
Warm-up: a process's first `next` compiles in the worker. Data preparation stays outside the measured block.

Upload bytes: the TFF types of every intrinsic through which a CLIENTS value reaches the SERVER (the audit's
`client_to_server_values`: aggregator value and weight, summed metrics), each the member type, i.e. what ONE
client sends; dtype size × elements over every tensor leaf, as written (no wire overhead, no compression).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tff_fedmm.federated import context
from tff_fedmm.federated.audit import client_to_server_values
from tff_fedmm.federated.participation import run_present

VOCABULARIES = (1_000, 10_000, 100_000)  # users + items per market of the upload and step figures


def worker_pid() -> int | None:
    """The local `worker_binary` that `federated.context` started and owns (None with remote workers)."""
    process = getattr(context._state.get("worker"), "process", None)
    return process.pid if process is not None and process.poll() is None else None


def proc_status_mb(pid: int | None, key: str) -> float:
    """`key` (VmRSS, VmHWM) of `pid` in MB, from /proc/<pid>/status (which reports kB); NaN without a pid."""
    if pid is None:
        return float("nan")
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024.0 for line in status if line.startswith(f"{key}:"))


class Sample(NamedTuple):
    wall: float  # seconds
    cpu: float  # CPU seconds of Python + worker


def now() -> Sample:
    """CPU: user + system seconds of this process and the owned worker (fields 14, 15 of /proc/<pid>/stat)."""
    wall, cpu, pid = time.perf_counter(), time.process_time(), worker_pid()
    if pid is not None:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 is fields[0]
        cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return Sample(wall, cpu)


def elapsed(start: Sample, end: Sample) -> Sample:
    return Sample(end.wall - start.wall, end.cpu - start.cpu)


def medians(samples: Sequence[Sample]) -> Sample:
    return Sample(statistics.median(s.wall for s in samples), statistics.median(s.cpu for s in samples))


def ratio_line(stage: str, fedmm: Sequence[Sample], fedavg: Sequence[Sample], warmup: int, markets: int) -> str:
    a, b = medians(fedmm), medians(fedavg)
    return (f"round_time_ratio {stage} fedmm/fedavg = {a.wall / b.wall:.3f} (median s per round: fedmm {a.wall:.3f}, "
            f"fedavg {b.wall:.3f}; cpu s per round, python+worker: fedmm {a.cpu:.3f}, fedavg {b.cpu:.3f}, "
            f"ratio {a.cpu / b.cpu:.3f}; {len(fedmm)} timed rounds after {warmup} warm-up, {markets} markets)")


def stateful_step(process, state, datasets):
    """FedMM's processes: (server, market states), put back by `client_index` as the pipelines do."""
    return run_present(process.next, *state, datasets.__getitem__, list(range(len(datasets))))[:2]


@dataclass
class Runner:
    """A process under test: `step(process, state, data(round_num))` runs a round and returns the new state
    (by default a TFF learning process's)."""

    process: object
    state: object
    data: Callable[[int], list]
    step: Callable = lambda process, state, data: process.next(state, data).state  # noqa: E731


def time_rounds(runners: Sequence[Runner], warmup: int, rounds: int) -> list[list[Sample]]:
    """Round r of every runner in turn, for r in 0..warmup+rounds-1; the timed rounds' samples per runner."""
    kept: list[list[Sample]] = [[] for _ in runners]
    for round_num in range(warmup + rounds):
        for runner, samples in zip(runners, kept):
            data, start = runner.data(round_num), now()
            runner.state = runner.step(runner.process, runner.state, data)
            if round_num >= warmup:
                samples.append(elapsed(start, now()))
    return kept


def upload_bytes(comp) -> int:
    """Bytes one client sends per call of `comp` (e.g. a process's `next`); raises on an unfixed dimension."""
    total = 0
    for leaf in (leaf for crossing in client_to_server_values(comp) for leaf in crossing.leaves):
        if leaf.shape is None or any(d is None for d in leaf.shape):
            raise ValueError(f"a crossing tensor has an unknown dimension: {leaf}; its bytes are not fixed")
        total += np.dtype(leaf.dtype).itemsize * math.prod(leaf.shape)
    return total


class LineFit(NamedTuple):
    slope: float
    intercept: float
    r2: float
    max_deviation: float  # max |y - fit| / fit over the points


def fit_line(x: Sequence[float], y: Sequence[float]) -> LineFit:
    """Least squares: whether a cost grows linearly (scaling), or at what rate (memory growth)."""
    x_, y_ = np.asarray(x, np.float64), np.asarray(y, np.float64)
    slope, intercept = np.polyfit(x_, y_, 1)
    fitted = slope * x_ + intercept
    total = float(np.sum((y_ - y_.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y_ - fitted) ** 2)) / total if total > 0 else 1.0
    return LineFit(float(slope), float(intercept), r2, float(np.max(np.abs(y_ - fitted) / np.abs(fitted))))
