"""Results tables: the per-market table printed to the terminal and the Markdown tables of a run.

Each method × backbone gets the unweighted mean over markets and the interaction-weighted mean
(`eval.metrics.summarize_markets`): the first is what an average market sees, the second what the
pooled interactions see.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from tff_fedmm.eval.evaluate import METRICS
from tff_fedmm.eval.metrics import summarize_markets

KEYS = ["method", "backbone", "market"]


def with_summaries(results: pd.DataFrame, weights: Mapping[str, float]) -> pd.DataFrame:
    """`results` plus rows `mean` and `weighted_mean` per method × backbone, market rows first."""
    metrics = [m for m in METRICS if m in results.columns]
    parts = [summarize_markets(group[["market", *metrics]], weights).assign(method=method, backbone=backbone)
             for (method, backbone), group in results.groupby(["method", "backbone"], sort=False)]
    table = pd.concat(parts, ignore_index=True)[KEYS + metrics]
    is_summary = table["market"].isin(["mean", "weighted_mean"])
    return pd.concat([table[~is_summary], table[is_summary]], ignore_index=True)


def format_table(results: pd.DataFrame, weights: Mapping[str, float]) -> str:
    return with_summaries(results, weights).to_string(index=False, float_format=lambda v: f"{v:.4f}")


def markdown_by_market(results: pd.DataFrame, metric: str, weights: Mapping[str, float]) -> str:
    """Rows method × backbone, one column per market, then `mean` and `weighted_mean`."""
    table = with_summaries(results, weights)
    wide = table.pivot_table(index=["method", "backbone"], columns="market", values=metric, sort=False)
    wide = wide[[*results["market"].unique(), "mean", "weighted_mean"]]
    header = "| method | backbone | " + " | ".join(wide.columns) + " |"
    lines = [header, "|" + "---|" * (len(wide.columns) + 2)]
    for (method, backbone), row in wide.iterrows():
        lines.append(f"| {method} | {backbone} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    return "\n".join(lines)
