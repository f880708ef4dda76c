"""Per-market counts, so a user can check what was loaded before spending time on training."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tff_fedmm.data.markets import MarketSet

_TEXT_COLUMNS = {"market"}


def summarize(market_set: MarketSet) -> pd.DataFrame:
    """One row per market.

    `rows` counts data lines in the source; `interactions` counts distinct user-item pairs after
    duplicates and repeats were dropped, which is what the splits hold. `shared_items` counts items
    with a counterpart in another market per `same_item` (EVALUATION-ONLY knowledge).
    """
    pairs = market_set.same_item
    records = []
    for name, market in market_set.markets.items():
        as_a = pairs.loc[pairs["market_a"] == name, "item_a"]
        as_b = pairs.loc[pairs["market_b"] == name, "item_b"]
        shared = np.union1d(as_a, as_b)
        records.append(
            {
                "market": name,
                "rows": market.file_rows,
                "interactions": market.num_interactions,
                "users": market.num_users,
                "items": market.num_items,
                "train": len(market.train),
                "valid": len(market.valid),
                "test": len(market.test),
                "density": market.num_interactions / (market.num_users * market.num_items),
                "shared_items": len(shared),
            }
        )
    return pd.DataFrame.from_records(records)


def format_summary(df: pd.DataFrame) -> str:
    """A plain aligned table: numbers right-aligned with thousands separators, density in percent."""
    header = list(df.columns)
    body = [[_cell(column, value) for column, value in zip(header, row)] for row in df.itertuples(index=False)]
    widths = [max(len(text) for text in [name, *(row[i] for row in body)]) for i, name in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            text.ljust(width) if name in _TEXT_COLUMNS else text.rjust(width)
            for name, text, width in zip(header, cells, widths)
        ).rstrip()

    return "\n".join([line(header), *(line(row) for row in body)])


def _cell(column: str, value: object) -> str:
    if column in _TEXT_COLUMNS:
        return str(value)
    if column == "density":
        return f"{100 * float(value):.2f}%"
    return f"{int(value):,}"
