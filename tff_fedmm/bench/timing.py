"""Processes timed against each other: warm-up, then interleaved timed rounds, then medians.

Interleaved: on a shared machine load drifts, and alternating the processes round by round puts them under
the same drift. Medians: one slow round (garbage collection, another job) moves no figure. Warm-up: a
process's first `next` compiles in the worker. Every round is measured in wall seconds (the figures) and in
CPU seconds of Python + worker (`procfs`: the cost, which others' load barely moves); data preparation stays
outside the measured block.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from tff_fedmm.bench.procfs import cpu_seconds
from tff_fedmm.federated.participation import run_present


class Sample(NamedTuple):
    wall: float  # seconds
    cpu: float  # CPU seconds of Python + worker


def fedavg_step(process, state, datasets):
    return process.next(state, datasets).state


def stateful_step(process, state, datasets):
    """FedMM's processes: (server, market states), put back by `client_index` as the pipelines do."""
    return run_present(process.next, *state, datasets.__getitem__, list(range(len(datasets))))[:2]


@dataclass
class Runner:
    """A process under test: `step(process, state, data(round_num))` runs a round and returns the new state."""

    process: object
    state: object
    data: Callable[[int], list]
    step: Callable = fedavg_step


def time_rounds(runners: Sequence[Runner], warmup: int, rounds: int) -> list[list[Sample]]:
    """Round r of every runner in turn, for r in 0..warmup+rounds-1; the timed rounds' samples per runner."""
    kept: list[list[Sample]] = [[] for _ in runners]
    for round_num in range(warmup + rounds):
        for runner, samples in zip(runners, kept):
            data = runner.data(round_num)
            wall, cpu = time.perf_counter(), cpu_seconds()
            runner.state = runner.step(runner.process, runner.state, data)
            if round_num >= warmup:
                samples.append(Sample(time.perf_counter() - wall, cpu_seconds() - cpu))
    return kept


def median(samples: Sequence[Sample], cpu: bool = False) -> float:
    return statistics.median(s.cpu if cpu else s.wall for s in samples)


def ratio_line(stage: str, fedmm: Sequence[Sample], fedavg: Sequence[Sample], warmup: int, markets: int) -> str:
    wall, cpu = (median(fedmm), median(fedavg)), (median(fedmm, True), median(fedavg, True))
    return (f"round_time_ratio {stage} fedmm/fedavg = {wall[0] / wall[1]:.3f} "
            f"(median s per round: fedmm {wall[0]:.3f}, fedavg {wall[1]:.3f}; "
            f"cpu s per round, python+worker: fedmm {cpu[0]:.3f}, fedavg {cpu[1]:.3f}, "
            f"ratio {cpu[0] / cpu[1]:.3f}; {len(fedmm)} timed rounds after {warmup} warm-up, {markets} markets)")
