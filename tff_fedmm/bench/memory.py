"""Memory over rounds of the real CTR pipeline, for this Python process and the TFF worker.

It runs `ctr_stage.train_partial` itself (per-market validation included, early stopping off): a leak that
matters is one the pipeline has (per-round models, retracing, datasets), not one of a bare `next` loop. A
stand-in progress reporter samples after each round, so no pipeline code changes: VmRSS from /proc, growth
= its least-squares slope after the first fifth of the rounds (caches and allocator pools fill early), peak =
the kernel's high-water mark (VmHWM) over the whole bench run; and the pipeline's seconds per round.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from tff_fedmm import progress
from tff_fedmm.bench.ctr import CTRWorkload
from tff_fedmm.bench.procfs import cpu_seconds, proc_status_mb, worker_pid
from tff_fedmm.pipelines import ctr_stage


def _slope(values: list[float]) -> float:
    if len(values) < 2 or any(np.isnan(values)):
        return float("nan")
    return float(np.polyfit(np.arange(len(values), dtype=np.float64), np.asarray(values), 1)[0])


def memory_lines(work: CTRWorkload, rounds: int) -> list[str]:
    """Runs `train_partial` for exactly `rounds` rounds, sampling after each."""
    pids = {"python": os.getpid(), "worker": worker_pid()}
    ends, cpu_ends, rss = [time.perf_counter()], [cpu_seconds()], {name: [] for name in pids}

    def round_done(**_: float) -> None:
        ends.append(time.perf_counter())
        cpu_ends.append(cpu_seconds())
        for name, pid in pids.items():
            rss[name].append(proc_status_mb(pid)["VmRSS"] if pid is not None else float("nan"))

    ignore = lambda *_, **__: None  # noqa: E731
    sampler = SimpleNamespace(start_stage=ignore, end_stage=ignore, close=ignore, round_done=round_done)
    previous, progress._reporter = progress._reporter, sampler
    try:
        ctr_stage.train_partial(work.market_set, work.backbone, work.use,
                                replace(work.config, rounds=rounds, round_patience=rounds + 1), work.k)
    finally:
        progress._reporter = previous
    done = len(ends) - 1
    skip = max(1, done // 5)  # round 1 also carries building the process
    peak = {n: proc_status_mb(pid)["VmHWM"] if pid is not None else float("nan") for n, pid in pids.items()}
    growth = {n: _slope(values[skip:]) for n, values in rss.items()}
    wall, cpu = np.diff(ends)[skip:], np.diff(cpu_ends)[skip:]
    wall_s, cpu_s = (float(statistics.median(v)) if len(v) else float("nan") for v in (wall, cpu))
    span = f"rounds {skip + 1}..{done}"
    return [
        f"memory peak_rss_mb python={peak['python']:.1f} worker={peak['worker']:.1f} (VmHWM over the bench run)",
        (f"memory growth_mb_per_round python={growth['python']:.3f} worker={growth['worker']:.3f} "
         f"(least-squares slope of VmRSS over {span} of the CTR pipeline, train_partial)"),
        (f"pipeline_round_seconds ctr = {wall_s:.3f} (cpu s, python+worker {cpu_s:.3f}; "
         f"train_partial round incl. per-market validation, median over {span})"),
    ]
