"""Round time against the number of markets, on synthetic markets of one fixed size.

The generator draws each market from its own seed, so the first N markets of the largest set are the
N-market set. The ID tables are sized by the generator's user and item counts, not by the largest market
present, so one FedMM CTR process (traced once) serves every N and only the number of clients changes. A
least-squares line through (N, seconds) says whether the cost per market is constant: slope = seconds per
market, R², and the largest relative deviation of a point from the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from tff_fedmm.bench.ctr import CTRWorkload, fedmm_runner
from tff_fedmm.bench.timing import median, time_rounds
from tff_fedmm.data.markets import MarketSet


class LineFit(NamedTuple):
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


def scaling_line(full: CTRWorkload, counts: Sequence[int], warmup: int, rounds: int) -> str:
    """`full`: the workload on max(counts) fixed-size markets, its ID tables at the generator's sizes."""
    process, wall, cpu = None, [], []
    for n in counts:
        markets = MarketSet({m: full.market_set.markets[m] for m in full.market_set.names[:n]},
                            full.market_set.same_item, None, full.market_set.source)
        runner = fedmm_runner(replace(full, market_set=markets, cache={}), process)
        process = runner.process
        (samples,) = time_rounds([runner], warmup, rounds)
        wall.append(median(samples))
        cpu.append(median(samples, cpu=True))

    def fit_text(f: LineFit) -> str:
        return (f"least squares {f.slope:.4f} s/market {f.intercept:+.3f} s, r2 = {f.r2:.4f}, "
                f"max deviation from line {100 * f.max_deviation:.1f}%")

    return (f"scaling markets={','.join(map(str, counts))} seconds_per_round = {','.join(f'{s:.3f}' for s in wall)} "
            f"({fit_text(fit_line(counts, wall))}; cpu s per round, python+worker "
            f"{','.join(f'{s:.3f}' for s in cpu)}: {fit_text(fit_line(counts, cpu))})")
