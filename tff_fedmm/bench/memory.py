"""Memory over many rounds of the real CTR pipeline, for this Python process and the TFF worker.

What runs is `pipelines.ctr_stage.train_partial` itself (FedMM's CTR stage: `process.next`, then every
market's validation with its market model), with early stopping disabled, because a leak that matters
is one the pipeline has — per-round Keras models, retraced functions, datasets rebuilt every round — not
one of a bare `next` loop. After each round the resident set size (VmRSS) of both processes is read
from /proc; growth is the least-squares slope over the rounds after the first fifth (caches and
allocator pools fill early: rounds 10..50 of 50). Peaks are the kernel's high-water marks (VmHWM), i.e.
over the whole bench run up to that point. The pipeline's seconds per round come with it.

The per-round hook is the progress reporter (`tff_fedmm.progress`): the pipeline already reports each
round there, so no pipeline code changes for the benchmark.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np

from tff_fedmm import progress
from tff_fedmm.bench.procfs import cpu_seconds, proc_status_mb, worker_pid
from tff_fedmm.bench.workload import CTRWorkload


class _RoundSampler:
    """Stands in for the progress reporter: samples both processes' RSS and the time at each round."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = pids
        self.rss: dict[str, list[float]] = {name: [] for name in pids}
        self.ends: list[float] = [time.perf_counter()]
        self.cpu: list[float] = [cpu_seconds()]

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


@dataclass(frozen=True)
class Memory:
    rounds: int
    first_fitted_round: int  # 1-based: growth is fitted over rounds first_fitted_round..rounds
    peak_mb: dict[str, float]  # python, worker
    growth_mb_per_round: dict[str, float]
    seconds_per_round: float  # median over the fitted rounds, validation included
    cpu_seconds_per_round: float  # the same in CPU seconds, Python + worker


def _slope(values: list[float]) -> float:
    if len(values) < 2 or any(np.isnan(values)):
        return float("nan")
    return float(np.polyfit(np.arange(len(values), dtype=np.float64), np.asarray(values), 1)[0])


def watch_pipeline(workload: CTRWorkload, rounds: int) -> Memory:
    """Runs `train_partial` for exactly `rounds` rounds and samples memory after each."""
    from tff_fedmm.pipelines import ctr_stage

    config = replace(workload.config, rounds=rounds, round_patience=rounds + 1)  # never stops early
    pids = {"python": os.getpid(), "worker": worker_pid()}
    sampler = _RoundSampler(pids)
    previous, progress._reporter = progress._reporter, sampler
    try:
        ctr_stage.train_partial(workload.market_set, workload.backbone, workload.use, config, workload.k)
    finally:
        progress._reporter = previous
    done = len(sampler.ends) - 1
    skip = max(1, done // 5)  # round 1 also carries building the process
    peak = {name: (proc_status_mb(pid)["VmHWM"] if pid is not None else float("nan")) for name, pid in pids.items()}
    durations, cpu = np.diff(sampler.ends)[skip:], np.diff(sampler.cpu)[skip:]
    return Memory(rounds=done, first_fitted_round=skip + 1, peak_mb=peak,
                  growth_mb_per_round={name: _slope(values[skip:]) for name, values in sampler.rss.items()},
                  seconds_per_round=float(statistics.median(durations)) if len(durations) else float("nan"),
                  cpu_seconds_per_round=float(statistics.median(cpu)) if len(cpu) else float("nan"))


def memory_lines(result: Memory) -> list[str]:
    p, g = result.peak_mb, result.growth_mb_per_round
    span = f"rounds {result.first_fitted_round}..{result.rounds}"
    return [
        f"memory peak_rss_mb python={p['python']:.1f} worker={p['worker']:.1f} (VmHWM over the bench run)",
        (f"memory growth_mb_per_round python={g['python']:.3f} worker={g['worker']:.3f} "
         f"(least-squares slope of VmRSS over {span} of the CTR pipeline, train_partial)"),
        (f"pipeline_round_seconds ctr = {result.seconds_per_round:.3f} (cpu s, python+worker "
         f"{result.cpu_seconds_per_round:.3f}; train_partial round incl. per-market validation, median over {span})"),
    ]
