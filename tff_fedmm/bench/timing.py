"""Round-time comparison of two processes: warm-up, then interleaved timed rounds, then medians.

Why interleaved: the machine is shared, so load drifts during a run. Alternating one FedMM round and one
FedAvg round puts both under the same drift, where timing all of one and then all of the other would
charge a burst of someone else's work to whichever ran then. Why medians: a single slow round (garbage
collection, another process) should not move the figure. Why warm-up: the first `next` of a process
compiles its computation in the worker (seconds), a cost paid once per process, not per round.
Each round is measured in wall seconds (the figure) and in CPU seconds of Python + worker (the cost,
which others' load barely moves; see `procfs`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from tff_fedmm.bench.procfs import cpu_seconds


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


# A round runner: given a round number, runs that round of its process; returns `process.next`'s Sample
# (data preparation happens outside the measured block).
RoundRunner = Callable[[int], Sample]


@dataclass(frozen=True)
class RoundTimes:
    samples: tuple[Sample, ...]  # timed rounds only

    @property
    def seconds(self) -> tuple[float, ...]:
        return tuple(s.wall for s in self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)


def time_rounds(runners: Sequence[RoundRunner], warmup: int, rounds: int) -> list[RoundTimes]:
    """Runs round r of every runner in turn, for r in 0..warmup+rounds-1; keeps the timed rounds."""
    kept: list[list[Sample]] = [[] for _ in runners]
    for round_num in range(warmup + rounds):
        for runner, samples in zip(runners, kept):
            sample = runner(round_num)
            if round_num >= warmup:
                samples.append(sample)
    return [RoundTimes(tuple(s)) for s in kept]


def ratio_line(stage: str, fedmm: RoundTimes, fedavg: RoundTimes, warmup: int, markets: int) -> str:
    return (f"round_time_ratio {stage} fedmm/fedavg = {fedmm.median / fedavg.median:.3f} "
            f"(median s per round: fedmm {fedmm.median:.3f}, fedavg {fedavg.median:.3f}; "
            f"cpu s per round, python+worker: fedmm {fedmm.median_cpu:.3f}, fedavg {fedavg.median_cpu:.3f}, "
            f"ratio {fedmm.median_cpu / fedavg.median_cpu:.3f}; "
            f"{len(fedmm.seconds)} timed rounds after {warmup} warm-up, {markets} markets)")
