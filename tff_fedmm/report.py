"""Results tables: the per-market table printed to the terminal and the Markdown report of a run.

Per-market tables average the training seeds first; each method × backbone then gets the unweighted
mean over markets and the interaction-weighted mean (`eval.metrics.summarize_markets`): the first is
what an average market sees, the second what the pooled interactions see. The report adds mean ± 95%
CI over seeds and the paired differences to `local` and `fedper` (`eval.seed_stats`); only those
decide whether a method "beats" another.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from tff_fedmm.eval.evaluate import METRICS
from tff_fedmm.eval.metrics import summarize_markets
from tff_fedmm.eval.seed_stats import paired_differences, summary

KEYS = ["method", "backbone", "market"]
BASELINES = ("local", "fedper")


def seed_average(results: pd.DataFrame) -> pd.DataFrame:
    """One row per method × backbone × market: every metric averaged over the training seeds."""
    metrics = [c for c in results.columns if c not in (*KEYS, "seed")]
    return results.groupby(KEYS, sort=False)[metrics].mean().reset_index()


def with_summaries(results: pd.DataFrame, weights: Mapping[str, float]) -> pd.DataFrame:
    """Seed-averaged `results` plus rows `mean` and `weighted_mean` per method × backbone, market rows first."""
    results = seed_average(results)
    metrics = [m for m in METRICS if m in results.columns]
    parts = [summarize_markets(group[["market", *metrics]], weights).assign(method=method, backbone=backbone)
             for (method, backbone), group in results.groupby(["method", "backbone"], sort=False)]
    table = pd.concat(parts, ignore_index=True)[KEYS + metrics]
    is_summary = table["market"].isin(["mean", "weighted_mean"])
    return pd.concat([table[~is_summary], table[is_summary]], ignore_index=True)


def format_table(results: pd.DataFrame, weights: Mapping[str, float]) -> str:
    seeds = results["seed"].nunique() if "seed" in results.columns else 1
    table = with_summaries(results, weights).to_string(index=False, float_format=lambda v: f"{v:.4f}")
    return (f"mean over {seeds} seeds\n" if seeds > 1 else "") + table


def markdown_by_market(results: pd.DataFrame, metric: str, weights: Mapping[str, float]) -> str:
    """Rows method × backbone, one column per market, then `mean` and `weighted_mean` (seed-averaged)."""
    table = with_summaries(results, weights)
    wide = table.pivot_table(index=["method", "backbone"], columns="market", values=metric, sort=False)
    wide = wide[[*results["market"].unique(), "mean", "weighted_mean"]]
    header = "| method | backbone | " + " | ".join(wide.columns) + " |"
    lines = [header, "|" + "---|" * (len(wide.columns) + 2)]
    for (method, backbone), row in wide.iterrows():
        lines.append(f"| {method} | {backbone} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    return "\n".join(lines)


def markdown_intervals(results: pd.DataFrame, metric: str) -> str:
    """Mean ± 95% CI over seeds per method × backbone: the mean over markets, then each market."""
    table = summary(results, metric)
    markets = [*results["market"].unique(), "mean"]
    wide = {(m, b): dict(zip(g["market"], zip(g["mean"], g["ci"], g["seeds"])))
            for (m, b), g in table.groupby(["method", "backbone"], sort=False)}
    lines = ["| method | backbone | mean over markets | " + " | ".join(markets[:-1]) + " |",
             "|" + "---|" * (len(markets) + 2)]
    for (method, backbone), cells in wide.items():
        lines.append(f"| {method} | {backbone} | " + " | ".join(_cell(*cells[m]) for m in [markets[-1], *markets[:-1]])
                     + " |")
    seeds = int(table["seeds"].max()) if len(table) else 0
    return "\n".join(lines) + f"\n\n{metric}: mean ± half-width of the 95% t-interval over {seeds} training seed(s)."


def markdown_paired(results: pd.DataFrame, metric: str, baseline: str) -> str | None:
    """Method − `baseline`, paired by seed: the mean over markets with its CI and verdict, then per market."""
    table = paired_differences(results, metric, baseline)
    if table.empty:
        return None
    markets = list(results["market"].unique())
    lines = [f"| method | backbone | − {baseline} (mean over markets) | verdict | " + " | ".join(markets) + " |",
             "|" + "---|" * (len(markets) + 4)]
    for (method, backbone), g in table.groupby(["method", "backbone"], sort=False):
        cells = dict(zip(g["market"], zip(g["mean"], g["ci"], g["seeds"])))
        verdict = g.loc[g["market"] == "mean", "verdict"].iloc[0]
        lines.append(f"| {method} | {backbone} | {_cell(*cells['mean'], signed=True)} | {verdict} | "
                     + " | ".join(_cell(*cells[m], signed=True) for m in markets) + " |")
    return "\n".join(lines)


def markdown_summary(results: pd.DataFrame, metrics: list[str]) -> str:
    """One row per method × backbone: per metric, the mean over markets ± 95% CI over seeds, then the paired
    difference to each baseline present, in bold where its interval excludes 0 (the README's table)."""
    baselines = [b for b in BASELINES if b in set(results["method"])]
    cells: dict[tuple, str] = {}
    for metric in metrics:
        for r in summary(results, metric).query("market == 'mean'").itertuples():
            cells[r.method, r.backbone, metric, None] = _cell(r.mean, r.ci, r.seeds)
        for baseline in baselines:
            for r in paired_differences(results, metric, baseline).query("market == 'mean'").itertuples():
                text = _cell(r.mean, r.ci, r.seeds, signed=True)
                cells[r.method, r.backbone, metric, baseline] = f"**{text}**" if r.verdict in ("beats", "worse") else text
    columns = [(metric, b) for metric in metrics for b in (None, *baselines)]
    lines = ["| method | backbone | " + " | ".join(m if b is None else f"− {b}" for m, b in columns) + " |",
             "|" + "---|" * (len(columns) + 2)]
    for method, backbone in results[["method", "backbone"]].drop_duplicates().itertuples(index=False):
        lines.append(f"| {method} | {backbone} | "
                     + " | ".join(cells.get((method, backbone, m, b), "") for m, b in columns) + " |")
    note = "Mean over markets ± half-width of the 95% t-interval over seeds"
    if baselines:
        note += f"; {', '.join('− ' + b for b in baselines)}: paired by seed; bold: the interval excludes 0"
    return "\n".join(lines) + f"\n\n{note}."


def markdown_report(results: pd.DataFrame, metric: str, weights: Mapping[str, float]) -> str:
    """The run's report for one metric: intervals, paired differences to each baseline present, and the
    seed-averaged per-market table."""
    parts = [f"## {metric}: mean ± 95% CI over seeds", markdown_intervals(results, metric)]
    for baseline in BASELINES:
        if baseline in set(results["method"]):
            paired = markdown_paired(results, metric, baseline)
            if paired:
                parts += [f"## {metric}: paired difference to {baseline} (per seed, then t-interval; "
                          "\"beats\" only where the interval on the mean over markets excludes 0)", paired]
    parts += [f"## {metric} per market (mean over seeds; mean and interaction-weighted mean over markets)",
              markdown_by_market(results, metric, weights)]
    return "\n\n".join(parts)


def _cell(mean: float, half: float, seeds: int, signed: bool = False) -> str:
    value = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return value if not np.isfinite(half) else f"{value} ± {half:.4f}"
