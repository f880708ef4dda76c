"""Round time against the number of markets, on synthetic markets of one fixed size.

Every market is generated with the same parameters (users, items, interactions per user; see
`data.synthetic.SyntheticConfig`), whose generator draws each market from its own seed, so the first N
markets of a 50-market set are the N-market set. The ID tables are sized by the generator's user and item
counts, not by the largest market present, so one FedMM CTR process (traced once) serves every N and the
only thing that changes is how many clients a round has. A least-squares line through (N, seconds)
says whether the cost per market is constant: slope = seconds per market, R², and the largest
relative deviation of a point from the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tff_fedmm.bench.options import SyntheticSizes
from tff_fedmm.bench.timing import time_rounds
from tff_fedmm.bench.workload import FedMMCTR, make_workload


@dataclass(frozen=True)
class LineFit:
    slope: float
    intercept: float
    r2: float
    max_deviation: float  # max |y - fit| / fit over the points


def fit_line(x: Sequence[float], y: Sequence[float]) -> LineFit:
    x_, y_ = np.asarray(x, np.float64), np.asarray(y, np.float64)
    slope, intercept = np.polyfit(x_, y_, 1)
    fitted = slope * x_ + intercept
    total = float(np.sum((y_ - y_.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y_ - fitted) ** 2)) / total if total > 0 else 1.0
    return LineFit(float(slope), float(intercept), r2, float(np.max(np.abs(y_ - fitted) / np.abs(fitted))))


@dataclass(frozen=True)
class Scaling:
    markets: tuple[int, ...]
    seconds: tuple[float, ...]  # median wall seconds per round at each market count
    fit: LineFit
    cpu_seconds: tuple[float, ...]  # median CPU seconds (Python + worker) per round
    cpu_fit: LineFit


def measure_scaling(counts: Sequence[int], sizes: SyntheticSizes, backbone: str, seed: int, warmup: int,
                    rounds: int) -> Scaling:
    from tff_fedmm.data.markets import load_markets
    from tff_fedmm.data.synthetic import SyntheticConfig

    synthetic = SyntheticConfig(num_markets=max(counts), users_per_market=sizes.users_per_market,
                                items_per_market=sizes.items_per_market,
                                interactions_per_user=sizes.interactions_per_user, seed=seed)
    full = make_workload(load_markets("synthetic", None, synthetic), backbone, seed,
                         users=sizes.users_per_market, items=sizes.items_per_market)
    process = None
    medians, cpu = [], []
    for n in counts:
        runner = FedMMCTR(full.subset(full.market_set.names[:n]), process)
        process = runner.process
        (times,) = time_rounds([runner], warmup, rounds)
        medians.append(times.median)
        cpu.append(times.median_cpu)
    return Scaling(tuple(counts), tuple(medians), fit_line(counts, medians), tuple(cpu), fit_line(counts, cpu))


def _fit_text(f: LineFit) -> str:
    return (f"least squares {f.slope:.4f} s/market {f.intercept:+.3f} s, r2 = {f.r2:.4f}, "
            f"max deviation from line {100 * f.max_deviation:.1f}%")


def scaling_line(result: Scaling) -> str:
    return (f"scaling markets={','.join(map(str, result.markets))} "
            f"seconds_per_round = {','.join(f'{s:.3f}' for s in result.seconds)} "
            f"({_fit_text(result.fit)}; cpu s per round, python+worker "
            f"{','.join(f'{s:.3f}' for s in result.cpu_seconds)}: {_fit_text(result.cpu_fit)})")
