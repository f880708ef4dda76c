"""Market-invariant descriptors of users and items: what can anchor a global code without shared IDs.

A market's CF space is defined only up to an invertible transform, so CF embeddings alone cannot tell
two markets which of their regions correspond. Some facts about an entity mean the same thing in every
market and are computed inside the market from its own train split: how popular it is among its peers
(a quantile, so market size drops out), how popular its neighbours are, how it is rated, and when it
was active. Calendar dates are common to all markets, so a product's launch shows up at the same time
everywhere. Nothing here reads another market or any identifier; the train split only, so the
valid/test interactions never shape a code.

Every column has a fixed transform to roughly unit scale (no per-market standardisation, which would
shift a market's calendar against the others).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tff_fedmm.data.splits import Market

DESCRIPTORS = ("degree_quantile", "neighbour_degree_quantile", "rating_mean", "rating_spread",
               "first_year", "median_year", "last_year")
_YEAR_CENTRE, _YEAR_SCALE = 2016.0, 2.0  # XMarket spans about 2000–2020; fixed, the same in every market
_RATING_CENTRE, _RATING_SCALE = 4.0, 1.2
_SPREAD_CENTRE, _SPREAD_SCALE = 0.8, 0.8


def entity_descriptors(market: Market) -> tuple[np.ndarray, np.ndarray]:
    """(user descriptors, item descriptors), float32 arrays [num_users, 7] and [num_items, 7].

    An entity with no train interaction gets the lowest degree quantile and neutral values elsewhere.
    """
    train = market.train
    users, items = train["user"].to_numpy(), train["item"].to_numpy()
    user_degree = np.bincount(users, minlength=market.num_users).astype(np.float64)
    item_degree = np.bincount(items, minlength=market.num_items).astype(np.float64)
    years = train["date"].to_numpy("datetime64[D]").astype(np.int64) / 365.25 + 1970.0
    rows = pd.DataFrame({"user": users, "item": items, "rate": train["rate"].to_numpy(np.float64), "year": years,
                         "user_log_degree": np.log1p(user_degree[users]),
                         "item_log_degree": np.log1p(item_degree[items])})
    return (_describe(rows, "user", market.num_users, user_degree, "item_log_degree"),
            _describe(rows, "item", market.num_items, item_degree, "user_log_degree"))


def _describe(rows: pd.DataFrame, key: str, n: int, degree: np.ndarray, neighbour: str) -> np.ndarray:
    groups = rows.groupby(key)
    frame = pd.DataFrame(index=np.arange(n))
    frame["neighbour"] = groups[neighbour].mean()
    frame["rating_mean"] = groups["rate"].mean()
    frame["rating_spread"] = groups["rate"].std(ddof=0)
    frame["first"] = groups["year"].min()
    frame["median"] = groups["year"].median()
    frame["last"] = groups["year"].max()
    seen = frame["first"].notna().to_numpy()
    out = np.zeros((n, len(DESCRIPTORS)), np.float64)
    out[:, 0] = _unit_quantile(degree)
    out[seen, 1] = _unit_quantile(frame["neighbour"].to_numpy()[seen])
    out[seen, 2] = (frame["rating_mean"].to_numpy()[seen] - _RATING_CENTRE) / _RATING_SCALE
    out[seen, 3] = (frame["rating_spread"].to_numpy()[seen] - _SPREAD_CENTRE) / _SPREAD_SCALE
    for column, name in enumerate(("first", "median", "last"), start=4):
        out[seen, column] = (frame[name].to_numpy()[seen] - _YEAR_CENTRE) / _YEAR_SCALE
    return out.astype(np.float32)


def _unit_quantile(values: np.ndarray) -> np.ndarray:
    """Average-rank quantile in (0, 1], centred and scaled to unit variance (uniform → sd 1)."""
    if len(values) == 0:
        return np.zeros(0)
    quantile = pd.Series(values).rank(pct=True).to_numpy()
    return (quantile - 0.5) * np.sqrt(12.0)
