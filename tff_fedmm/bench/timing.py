"""Timing processes against each other: warm-up, then interleaved timed rounds, then medians.

Interleaved, because the machine is shared and its load drifts: alternating the processes round by round
puts them under the same drift, where timing one after the other would charge a burst of someone else's
work to whichever ran then. Medians, so that one slow round (garbage collection, another job) does not
move a figure. Warm-up, because a process's first `next` compiles in the worker, once per process. Each
round is measured in wall seconds (the figures) and CPU seconds of Python + worker (`procfs`: the cost,
which others' load barely moves). Data preparation stays outside the measured block.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from tff_fedmm.bench.procfs import cpu_seconds
from tff_fedmm.federated.participation import run_present


@dataclass
class Sample:
    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def measure() -> Iterator[Sample]:
    """`with measure() as s: work()` leaves the work's wall and CPU seconds in `s`."""
    sample = Sample()
    wall, cpu = time.perf_counter(), cpu_seconds()
    try:
        yield sample
    finally:
        sample.wall, sample.cpu = time.perf_counter() - wall, cpu_seconds() - cpu


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
            with measure() as sample:
                runner.state = runner.step(runner.process, runner.state, data)
            if round_num >= warmup:
                samples.append(sample)
    return kept


def median(samples: Sequence[Sample], cpu: bool = False) -> float:
    return statistics.median(s.cpu if cpu else s.wall for s in samples)


def ratio_line(stage: str, fedmm: Sequence[Sample], fedavg: Sequence[Sample], warmup: int, markets: int) -> str:
    wall, cpu = (median(fedmm), median(fedavg)), (median(fedmm, True), median(fedavg, True))
    return (f"round_time_ratio {stage} fedmm/fedavg = {wall[0] / wall[1]:.3f} "
            f"(median s per round: fedmm {wall[0]:.3f}, fedavg {wall[1]:.3f}; "
            f"cpu s per round, python+worker: fedmm {cpu[0]:.3f}, fedavg {cpu[1]:.3f}, "
            f"ratio {cpu[0] / cpu[1]:.3f}; {len(fedmm)} timed rounds after {warmup} warm-up, {markets} markets)")
