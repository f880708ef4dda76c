"""Round time against the number of markets, on synthetic markets of one fixed size.

The generator draws each market from its own seed, so the first N markets of the largest set are the
N-market set. The ID tables are sized by the generator's user and item counts, not by the largest market
present, so the FedMM CTR process of every N has the same model and only the number of clients changes. A
least-squares line through (N, seconds) says whether the cost per market is constant: slope = seconds per
market, R², and the largest relative deviation of a point from the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tff_fedmm.bench.ctr import CTRWorkload, fedmm_runner
from tff_fedmm.bench.measure import LineFit, fit_line, medians, time_rounds
from tff_fedmm.data.markets import MarketSet


def _fit_text(f: LineFit) -> str:
    return (f"least squares {f.slope:.4f} s/market {f.intercept:+.3f} s, r2 = {f.r2:.4f}, "
            f"max deviation from line {100 * f.max_deviation:.1f}%")


def scaling_line(full: CTRWorkload, counts: Sequence[int], warmup: int, rounds: int) -> str:
    """`full`: the workload on max(counts) fixed-size markets, its ID tables at the generator's sizes."""
    per_count = []
    for n in counts:
        markets = MarketSet({m: full.market_set.markets[m] for m in full.market_set.names[:n]},
                            full.market_set.same_item, None, full.market_set.source)
        runner = fedmm_runner(replace(full, market_set=markets, cache={}))
        per_count.append(medians(time_rounds([runner], warmup, rounds)[0]))
    wall, cpu = [s.wall for s in per_count], [s.cpu for s in per_count]
    return (f"scaling markets={','.join(map(str, counts))} seconds_per_round = {','.join(f'{s:.3f}' for s in wall)} "
            f"({_fit_text(fit_line(counts, wall))}; cpu s per round, python+worker "
            f"{','.join(f'{s:.3f}' for s in cpu)}: {_fit_text(fit_line(counts, cpu))})")
