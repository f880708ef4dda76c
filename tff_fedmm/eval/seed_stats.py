"""Confidence intervals over training seeds, and paired differences between methods.

Seeds are the unit of replication: for each seed the markets are averaged (each market counts once),
and the 95% interval of that mean is a Student-t interval over seeds. Two methods are compared PAIRED:
for each seed, method minus baseline on the same data seed, markets and backbone, then a t-interval
over those differences; pairing removes what the seeds share (the evaluation candidates, the data), so
it is much tighter than comparing two unpaired intervals. A difference is called real only when its
interval excludes 0; per-market differences are shown for inspection, never used to claim a win.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
LOWER_IS_BETTER = {"logloss"}
_GROUP = ["method", "backbone"]


def t_interval(values) -> tuple[float, float, int]:
    """(mean, half-width of the 95% t-interval, n); the half-width is NaN below two values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), 0
    if n == 1:
        return float(values[0]), float("nan"), 1
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return float(values.mean()), float(half), n


def per_seed(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows seed × method × backbone × market (market `mean`: the mean over markets of that seed)."""
    frame = results if "seed" in results.columns else results.assign(seed=0)
    frame = frame[["seed", *_GROUP, "market", metric]]
    means = frame.groupby(["seed", *_GROUP], sort=False)[metric].mean().reset_index().assign(market="mean")
    return pd.concat([frame, means[frame.columns]], ignore_index=True)


def summary(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """method, backbone, market (each market, then `mean`), mean, ci (half-width), seeds."""
    rows = [{"method": m, "backbone": b, "market": market, **_interval(group[metric])}
            for (m, b, market), group in per_seed(results, metric).groupby([*_GROUP, "market"], sort=False)]
    return pd.DataFrame(rows, columns=[*_GROUP, "market", "mean", "ci", "seeds"])


def paired_differences(results: pd.DataFrame, metric: str, baseline: str) -> pd.DataFrame:
    """Every other method minus `baseline`, per backbone and market (`mean`: mean over markets), paired
    by seed; `verdict` (on the `mean` rows only) says `beats`, `worse` or `no real difference`."""
    seeded = per_seed(results, metric)
    base = seeded[seeded["method"] == baseline].drop(columns="method").rename(columns={metric: "base"})
    paired = seeded[seeded["method"] != baseline].merge(base, on=["seed", "backbone", "market"])
    rows = []
    for (m, b, market), group in paired.groupby([*_GROUP, "market"], sort=False):
        interval = _interval(group[metric] - group["base"])
        verdict = _verdict(interval["mean"], interval["ci"], metric) if market == "mean" else ""
        rows.append({"method": m, "backbone": b, "market": market, **interval, "verdict": verdict})
    return pd.DataFrame(rows, columns=[*_GROUP, "market", "mean", "ci", "seeds", "verdict"])


def _interval(values: pd.Series) -> dict:
    mean, half, n = t_interval(values)
    return {"mean": mean, "ci": half, "seeds": n}


def _verdict(mean: float, half: float, metric: str) -> str:
    if not np.isfinite(half):
        return "one seed: no interval"
    if abs(mean) <= half:
        return "no real difference"
    better = (mean < 0) if metric in LOWER_IS_BETTER else (mean > 0)
    return "beats" if better else "worse"
