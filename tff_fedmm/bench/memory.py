"""Memory over many rounds of the real CTR pipeline, for this Python process and the TFF worker.

What runs is `ctr_stage.train_partial` itself (FedMM's CTR stage, per-market validation included) with
early stopping off, because a leak that matters is one the pipeline has (per-round Keras models, retraced
functions, datasets rebuilt every round), not one of a bare `next` loop. The pipeline reports each round to
the progress reporter, so standing in for it samples after each round without touching pipeline code:
VmRSS of both processes from /proc, whose growth is the least-squares slope over the rounds after the first
fifth (caches and allocator pools fill early); peaks are the kernel's high-water marks (VmHWM) over the
whole bench run. The pipeline's seconds per round come with it.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace

import numpy as np

from tff_fedmm import progress
from tff_fedmm.bench.ctr import CTRWorkload
from tff_fedmm.bench.procfs import cpu_seconds, proc_status_mb, worker_pid
from tff_fedmm.pipelines import ctr_stage


class _RoundSampler:
    """The progress reporter's interface; after each round: time, CPU seconds, VmRSS per process."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids, self.rss = pids, {name: [] for name in pids}
        self.ends, self.cpu = [time.perf_counter()], [cpu_seconds()]

    def start_stage(self, name: str, rounds: int) -> None:
        pass

    def end_stage(self, finished: bool = False) -> None:
        pass

    def close(self) -> None:
        pass

    def round_done(self, **_: float) -> None:
        self.ends.append(time.perf_counter())
        self.cpu.append(cpu_seconds())
        for name, pid in self.pids.items():
            self.rss[name].append(proc_status_mb(pid)["VmRSS"] if pid is not None else float("nan"))


def _slope(values: list[float]) -> float:
    if len(values) < 2 or any(np.isnan(values)):
        return float("nan")
    return float(np.polyfit(np.arange(len(values), dtype=np.float64), np.asarray(values), 1)[0])


def memory_lines(work: CTRWorkload, rounds: int) -> list[str]:
    """Runs `train_partial` for exactly `rounds` rounds, sampling after each."""
    pids = {"python": os.getpid(), "worker": worker_pid()}
    sampler = _RoundSampler(pids)
    previous, progress._reporter = progress._reporter, sampler
    try:
        ctr_stage.train_partial(work.market_set, work.backbone, work.use,
                                replace(work.config, rounds=rounds, round_patience=rounds + 1), work.k)
    finally:
        progress._reporter = previous
    done = len(sampler.ends) - 1
    skip = max(1, done // 5)  # round 1 also carries building the process
    peak = {n: proc_status_mb(pid)["VmHWM"] if pid is not None else float("nan") for n, pid in pids.items()}
    growth = {n: _slope(values[skip:]) for n, values in sampler.rss.items()}
    wall, cpu = np.diff(sampler.ends)[skip:], np.diff(sampler.cpu)[skip:]
    wall_s, cpu_s = (float(statistics.median(v)) if len(v) else float("nan") for v in (wall, cpu))
    span = f"rounds {skip + 1}..{done}"
    return [
        f"memory peak_rss_mb python={peak['python']:.1f} worker={peak['worker']:.1f} (VmHWM over the bench run)",
        (f"memory growth_mb_per_round python={growth['python']:.3f} worker={growth['worker']:.3f} "
         f"(least-squares slope of VmRSS over {span} of the CTR pipeline, train_partial)"),
        (f"pipeline_round_seconds ctr = {wall_s:.3f} (cpu s, python+worker {cpu_s:.3f}; "
         f"train_partial round incl. per-market validation, median over {span})"),
    ]
