"""Memory over rounds of the real CTR pipeline, for this Python process and the TFF worker.

It runs `ctr_stage.train_partial` itself (per-market validation included, early stopping off): a leak that
matters is one the pipeline has (per-round models, retracing, datasets), not one of a bare `next` loop. A
stand-in progress reporter samples after each round, so no pipeline code changes: VmRSS from /proc, growth
= its least-squares slope after the first fifth of the rounds (caches and allocator pools fill early), peak =
the kernel's high-water mark (VmHWM) over the whole bench run; and the pipeline's seconds per round.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from types import SimpleNamespace

from tff_fedmm import progress
from tff_fedmm.bench.ctr import CTRWorkload
from tff_fedmm.bench.measure import Stopwatch, fit_line, medians, proc_status_mb, worker_pid
from tff_fedmm.pipelines import ctr_stage


def _slope(values: list[float]) -> float:
    if len(values) < 2 or any(map(math.isnan, values)):
        return float("nan")
    return fit_line(range(len(values)), values).slope


def memory_lines(work: CTRWorkload, rounds: int) -> list[str]:
    """Runs `train_partial` for exactly `rounds` rounds, sampling after each."""
    pids = {"python": os.getpid(), "worker": worker_pid()}
    watch, laps, rss = Stopwatch(), [], {name: [] for name in pids}

    def round_done(**_: float) -> None:
        laps.append(watch.lap())
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
    skip = max(1, len(laps) // 5)  # round 1 also carries building the process
    peak = {n: proc_status_mb(pid)["VmHWM"] if pid is not None else float("nan") for n, pid in pids.items()}
    growth = {n: _slope(values[skip:]) for n, values in rss.items()}
    per_round = medians(laps[skip:])  # at least 2 laps: 3 rounds at least, never stopped early
    span = f"rounds {skip + 1}..{len(laps)}"
    return [
        f"memory peak_rss_mb python={peak['python']:.1f} worker={peak['worker']:.1f} (VmHWM over the bench run)",
        (f"memory growth_mb_per_round python={growth['python']:.3f} worker={growth['worker']:.3f} "
         f"(least-squares slope of VmRSS over {span} of the CTR pipeline, train_partial)"),
        (f"pipeline_round_seconds ctr = {per_round.wall:.3f} (cpu s, python+worker {per_round.cpu:.3f}; "
         f"train_partial round incl. per-market validation, median over {span})"),
    ]
