"""The run folder's figures, drawn with matplotlib's object API (no pyplot, no global backend switch).

    write_plots(folder, result)  # result: a CompareResult, or the RunFolder `read_run` returns

- `auc_by_round.png`: validation AUC (and LogLoss, the selection criterion) by round, mean over markets,
  one line per method × backbone. Keras methods (`local`, `local+codes`, `centralized`) report epochs,
  and each market may stop early: a round's mean is over the markets that reached it.
- `codebook_usage.png`: per code variant and round, the fraction of the global codebook updated and of
  the local codebook used (mean over markets for variants trained market by market); with the final
  codebook report, also each market's global and local code usage.
- `auc_by_market.png`: test AUC per market (and the mean over markets), one bar per method × backbone:
  the mean over training seeds, with the 95% t-interval over seeds as an error bar (none for one seed).

A figure whose table is empty or lacks its columns (e.g. no code method ran) is skipped, not an error.
Figures are `matplotlib.figure.Figure` objects printed by `FigureCanvasAgg`, so calling this from a
notebook neither changes its backend nor leaves figures open in pyplot.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tff_fedmm.eval.seed_stats import summary
from tff_fedmm.pipelines.compare_names import BACKBONES, METHODS

_LINESTYLES = ["-", "--", ":", "-."]


def write_plots(folder: Path, result) -> list[Path]:
    """Writes the figures that `result`'s tables support into `folder`; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Callable[[], Figure | None]]] = [
        ("auc_by_round.png", lambda: auc_by_round(_frame(result, "history"))),
        ("codebook_usage.png", lambda: codebook_usage(_frame(result, "codebook_history"), _frame(result, "codebooks"))),
        ("auc_by_market.png", lambda: auc_by_market(_frame(result, "results"))),
    ]
    written = []
    for name, draw in figures:
        figure = draw()
        if figure is not None:
            written.append(_save(figure, folder / name))
    return written


def auc_by_round(history: pd.DataFrame) -> Figure | None:
    if not _has(history, "method", "backbone", "round", "valid_auc"):
        return None
    metrics = [m for m in ("valid_auc", "valid_logloss") if m in history.columns]
    means = history.groupby(["method", "backbone", "round"], sort=False)[metrics].mean().reset_index()
    figure = _figure(len(metrics), 1)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    titles = {"valid_auc": "validation AUC (higher is better)",
              "valid_logloss": "validation LogLoss (selection criterion, lower is better)"}
    style = _Styles(means)
    for ax, metric in zip(axes, metrics):
        for (method, backbone), rows in means.groupby(["method", "backbone"], sort=False):
            rows = rows.sort_values("round")
            ax.plot(rows["round"], rows[metric], marker="o", markersize=3, label=style.label(method, backbone),
                    **style(method, backbone))
        ax.set_title(titles[metric])
        ax.set_xlabel("round (Keras methods: epoch)")
        ax.set_ylabel(metric.replace("valid_", "validation ").replace("auc", "AUC").replace("logloss", "LogLoss")
                      + " (mean over markets)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    _legend_below(figure, axes[0])
    figure.suptitle("Validation metrics by round, per method × backbone")
    return figure


def codebook_usage(history: pd.DataFrame, codebooks: pd.DataFrame | None = None) -> Figure | None:
    columns = [c for c in ("global_codes_updated", "local_codes_used") if c in history.columns]
    by_round = _has(history, "codes", "round") and bool(columns)
    usage = [c for c in ("global_usage", "local_usage") if codebooks is not None and c in codebooks.columns]
    by_market = codebooks is not None and _has(codebooks, "codes", "market") and bool(usage)
    if not (by_round or by_market):
        return None
    rows = int(by_round) + int(by_market)
    figure = _figure(2, rows)
    grid = figure.subplots(rows, 2, squeeze=False)
    titles = {"global_codes_updated": "global codebook: fraction of codes updated",
              "local_codes_used": "local codebook: fraction of codes used",
              "global_usage": "final global code usage per market", "local_usage": "final local code usage per market"}
    row = 0
    if by_round:
        # Variants trained market by market have a `market` column: average it away.
        means = history.groupby(["codes", "round"], sort=False)[columns].mean().reset_index()
        for ax, column in zip(grid[row], columns):
            for i, (variant, part) in enumerate(means.groupby("codes", sort=False)):
                part = part.sort_values("round")
                ax.plot(part["round"], part[column], marker="o", markersize=3, color=_color(i), label=variant)
            ax.set_title(titles[column])
            ax.set_xlabel("codebook round")
            ax.set_ylabel("fraction of codebook")
            ax.set_ylim(0, 1.05)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            ax.legend(title="code variant", fontsize="small")
        for ax in grid[row][len(columns):]:
            ax.set_visible(False)
        row += 1
    if by_market:
        for ax, column in zip(grid[row], usage):
            wide = codebooks.pivot_table(index="market", columns="codes", values=column, sort=False)
            _bars(ax, wide, [(v, {"color": _color(i)}) for i, v in enumerate(wide.columns)])
            ax.set_title(titles[column])
            ax.set_xlabel("market")
            ax.set_ylabel("fraction of codes assigned")
            ax.set_ylim(0, 1.05)
            ax.legend(title="code variant", fontsize="small")
        for ax in grid[row][len(usage):]:
            ax.set_visible(False)
    figure.suptitle("Codebook usage (K_global codes shared across markets, K_local private)")
    return figure


def auc_by_market(results: pd.DataFrame) -> Figure | None:
    if not _has(results, "method", "backbone", "market", "auc"):
        return None
    table = summary(results, "auc")
    if table.empty:
        return None
    wide = table.pivot_table(index="market", columns=["method", "backbone"], values="mean", sort=False)
    errors = table.pivot_table(index="market", columns=["method", "backbone"], values="ci", sort=False,
                               dropna=False).reindex(index=wide.index, columns=wide.columns)
    style = _Styles(results)
    series = [((method, backbone), {"color": style(method, backbone)["color"],
                                    "hatch": "//" if style.backbone_index(backbone) % 2 else None,
                                    "edgecolor": "white"})
              for method, backbone in wide.columns]
    figure = _figure(1, 1, width=float(np.clip(2.0 + 0.2 * wide.size, 7.0, 18.0)))
    ax = figure.subplots()
    _bars(ax, wide, series, labels=[style.label(m, b) for m, b in wide.columns], errors=errors)
    values = wide.to_numpy(dtype=float)
    low, high = np.nanmin(values), np.nanmax(values)
    ax.set_ylim(min(0.5, low) - 0.02, min(1.0, high + 0.03) + 0.01)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--", label="chance (0.5)")
    seeds = int(table["seeds"].max())
    ax.set_title(f"Test AUC per market, per method × backbone (mean over {seeds} seed(s)"
                 + (", bars: 95% CI)" if seeds > 1 else ")"))
    ax.set_xlabel("market")
    ax.set_ylabel("test AUC")
    _legend_below(figure, ax)
    return figure


# ---------------------------------------------------------------------------------------------------


class _Styles:
    """One colour per method (in METHODS order, so a method looks the same in every figure), one line
    style per backbone; labels name the backbone only when there are several."""

    def __init__(self, frame: pd.DataFrame):
        self.methods = _ordered(frame["method"].unique(), METHODS)
        self.backbones = _ordered(frame["backbone"].unique(), BACKBONES)

    def backbone_index(self, backbone: str) -> int:
        return self.backbones.index(backbone)

    def __call__(self, method: str, backbone: str) -> dict:
        return {"color": _color(self.methods.index(method)),
                "linestyle": _LINESTYLES[self.backbone_index(backbone) % len(_LINESTYLES)]}

    def label(self, method: str, backbone: str) -> str:
        return f"{method} / {backbone}" if len(self.backbones) > 1 else method


def write_privacy_tradeoff(table: pd.DataFrame, path: Path) -> Path:
    """Mean test AUC against ε (log scale) of `tasks/dp_tradeoff.py`, one colour per unit of privacy (its
    `unit` column: ε per market or per interaction; market if absent); the run without DP as lines."""
    figure = _figure(1, 1)
    ax = figure.add_subplot()
    table = table.assign(unit=table["unit"] if "unit" in table else "market")
    noised = table[np.isfinite(table["epsilon"])].sort_values("epsilon")
    for i, (unit, rows) in enumerate(noised.groupby("unit", sort=False)):
        for column, label, style in (("auc_mean", "mean over markets", "o-"),
                                     ("auc_weighted_mean", "interaction-weighted mean", "s--")):
            ax.plot(rows["epsilon"], rows[column], style, color=_color(2 * i + (column != "auc_mean")),
                    label=f"ε per {unit}: {label}")
        for _, row in rows.iterrows():
            ax.annotate(f"z={row['noise_multiplier']:g}", (row["epsilon"], row["auc_mean"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    for column, style in (("auc_mean", ":"), ("auc_weighted_mean", "-.")):
        for value in table.loc[~np.isfinite(table["epsilon"]), column]:
            ax.axhline(value, color="0.4", linewidth=0.8, linestyle=style)
    ax.set_xscale("log")
    ax.set_xlabel("ε (δ as in the table); grey: no DP (dotted: mean, dash-dot: weighted)")
    ax.set_ylabel("test AUC")
    ax.set_title("FedMM under DP: market-level and interaction-level (DP-SGD)")
    ax.legend(fontsize=8)
    return _save(figure, Path(path))


def write_privacy_attack(table: pd.DataFrame, path: Path) -> Path:
    """Recovery rate of adversaries (a) and (b) against ε (log scale) of `tasks/privacy_attack.py`: one colour
    per DP protection (its name without ` z=…`), (a) solid and (b) dashed; runs without DP as dotted
    horizontal lines; chance ± 2 standard deviations of one target as a band."""
    figure = _figure(1, 1)
    ax = figure.add_subplot()
    noised = table[np.isfinite(table["epsilon"])].sort_values("epsilon")
    families = noised["protection"].str.replace(r" z=\S+", "", regex=True)
    for i, (family, rows) in enumerate(noised.groupby(families, sort=False)):
        line = len(rows) > 1
        ax.plot(rows["epsilon"], rows["recovery_a"], "o-" if line else "o", color=_color(i),
                label=f"(a) public, {family}")
        ax.plot(rows["epsilon"], rows["recovery_b"], "s--" if line else "s", color=_color(i), markerfacecolor="none",
                label=f"(b) server, {family}")
    plain = table[~np.isfinite(table["epsilon"])]
    for j, row in enumerate(plain.itertuples()):
        ax.axhline(row.recovery_b, color=_color(5 + j), linestyle=":", label=f"(b) server, {row.protection}")
    if len(plain):
        ax.axhline(plain["recovery_a"].iloc[0], color="0.3", linestyle=":", label="(a) public, no DP")
    chance, spread = float(table["chance"].mean()), 2 * float(table["chance_std"].max())
    ax.axhspan(chance - spread, chance + spread, color="0.85", label="chance ± 2 sd")
    ax.set_xscale("log")
    ax.set_xlabel("ε of the codebook stage per market (δ as in the table)")
    ax.set_ylabel("share of the target's level-1 codes recovered")
    ax.set_title("What the codebook stage reveals about a market")
    ax.legend(fontsize="x-small")
    return _save(figure, Path(path))


def write_scarce_market(summary: pd.DataFrame, path: Path, target: str, metric: str = "auc") -> Path:
    """Test `metric` of the target market against the share of its training data each method saw, one
    panel per backbone; bands are the 95% intervals over seeds (`summary`: fraction, method, backbone,
    mean, ci, as `tasks/scarce_market.py` writes it)."""
    backbones = list(dict.fromkeys(summary["backbone"]))
    figure = _figure(len(backbones), 1)
    for column, backbone in enumerate(backbones):
        ax = figure.add_subplot(1, len(backbones), column + 1)
        for i, (method, rows) in enumerate(summary[summary["backbone"] == backbone].groupby("method", sort=False)):
            rows = rows.sort_values("fraction")
            x, y, half = (rows[c].to_numpy(dtype=float) for c in ("fraction", "mean", "ci"))
            ax.plot(x, y, "o-", color=_color(i), label=method)
            ax.fill_between(x, y - np.nan_to_num(half), y + np.nan_to_num(half), color=_color(i), alpha=0.2)
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(summary["fraction"])), [f"{f:g}" for f in sorted(set(summary["fraction"]))])
        ax.set_xlabel(f"share of {target}'s training interactions kept")
        ax.set_ylabel(f"{target} test {metric} (95% CI over seeds)")
        ax.set_title(backbone)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(figure, Path(path))


def _ordered(values, order) -> list[str]:
    values = [str(v) for v in values]
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), v))


def _color(i: int) -> str:
    return f"C{i % 10}"


def _bars(ax, wide: pd.DataFrame, series: list[tuple[object, dict]], labels: list[str] | None = None,
          errors: pd.DataFrame | None = None) -> None:
    """Grouped bars: one group per row of `wide`, one bar per column (styled by `series`); `errors`
    (shaped like `wide`, NaN for none) draws symmetric error bars."""
    x = np.arange(len(wide.index))
    width = 0.8 / max(1, len(series))
    for i, (column, style) in enumerate(series):
        yerr = None if errors is None else np.nan_to_num(errors[column].to_numpy(dtype=float), nan=0.0)
        ax.bar(x - 0.4 + width * (i + 0.5), wide[column].to_numpy(dtype=float), width,
               label=labels[i] if labels else str(column), yerr=yerr, capsize=2 if yerr is not None else 0, **style)
    ax.set_xticks(x, [str(v) for v in wide.index])
    ax.grid(axis="y", alpha=0.3)


def _legend_below(figure: Figure, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize="small")


def _figure(columns: int, rows: int, width: float | None = None) -> Figure:
    figure = Figure(figsize=(width or 6.0 * columns, 4.2 * rows), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")  # written whole, then renamed (as every run-folder file)
    with open(tmp, "wb") as handle:
        figure.savefig(handle, format="png")
    os.replace(tmp, path)
    return path


def _frame(result, name: str) -> pd.DataFrame:
    frame = getattr(result, name, None)
    return frame if isinstance(frame, pd.DataFrame) else pd.DataFrame()


def _has(frame: pd.DataFrame, *columns: str) -> bool:
    return not frame.empty and all(c in frame.columns for c in columns)
