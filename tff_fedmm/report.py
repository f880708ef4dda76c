"""Results tables: the per-market table printed to the terminal and the Markdown table of a run."""

from __future__ import annotations

import pandas as pd

from tff_fedmm.eval.evaluate import METRICS

KEYS = ["method", "backbone", "market"]


def format_table(results: pd.DataFrame) -> str:
    """One line per method × backbone × market, then the unweighted mean over markets per method."""
    metrics = [m for m in METRICS if m in results.columns]
    means = results.groupby(["method", "backbone"], sort=False)[metrics].mean().reset_index()
    means.insert(2, "market", "mean")
    table = pd.concat([results[KEYS + metrics], means], ignore_index=True)
    return table.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def markdown_by_market(results: pd.DataFrame, metric: str = "auc") -> str:
    """Rows method × backbone, one column per market plus the mean: the comparison at a glance."""
    wide = results.pivot_table(index=["method", "backbone"], columns="market", values=metric, sort=False)
    wide["mean"] = wide.mean(axis=1)
    header = "| method | backbone | " + " | ".join(wide.columns) + " |"
    rule = "|" + "---|" * (len(wide.columns) + 2)
    lines = [header, rule]
    for (method, backbone), row in wide.iterrows():
        lines.append(f"| {method} | {backbone} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    return "\n".join(lines)
