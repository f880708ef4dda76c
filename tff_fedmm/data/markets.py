"""The one entry point to data: a name ("synthetic" or a directory) in, split markets out.

`same_item` pairs items that are the same product in two markets. It is EVALUATION-ONLY: for real
data it comes from identical raw item IDs (ASINs), for synthetic data from the hidden same-product
table. Feeding it, or raw item IDs, to a model would hand it the cross-market alignment that FedMM
is supposed to learn from collaborative signal alone, so only alignment metrics may read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tff_fedmm.data.loading import RawMarket, load_market_dir
from tff_fedmm.data.splits import Market, prepare_market
from tff_fedmm.data.synthetic import SyntheticConfig, generate_synthetic
from tff_fedmm.errors import DataError

SYNTHETIC = "synthetic"
_PAIR_COLUMNS = ["market_a", "item_a", "market_b", "item_b"]


@dataclass(frozen=True, eq=False)
class MarketSet:
    markets: dict[str, Market]
    # market_a, item_a, market_b, item_b as int item indices; EVALUATION-ONLY, except that anchored mode
    # (`data.anchors`) derives its agreed anchor list from it
    same_item: pd.DataFrame
    item_cluster: dict[str, np.ndarray] | None  # ground-truth cluster per item index; synthetic only
    source: str

    @property
    def names(self) -> list[str]:
        return list(self.markets)

    @property
    def largest_vocabulary(self) -> tuple[int, int]:
        """(users, items) of the largest market: one TFF process serves every market, so a model whose
        private ID tables differ per market is built at these sizes (smaller markets leave rows unused)."""
        return (max(m.num_users for m in self.markets.values()), max(m.num_items for m in self.markets.values()))


def load_markets(
    data: str = SYNTHETIC, markets: Sequence[str] | None = None, synthetic: SyntheticConfig | None = None
) -> MarketSet:
    if data == SYNTHETIC:
        return _synthetic_markets(synthetic or SyntheticConfig(), markets)
    raw = load_market_dir(data, markets)
    prepared = {name: prepare_market(r) for name, r in raw.items()}
    return MarketSet(markets=prepared, same_item=_identical_raw_items(prepared), item_cluster=None, source=str(data))


def _synthetic_markets(config: SyntheticConfig, markets: Sequence[str] | None) -> MarketSet:
    generated = generate_synthetic(config)
    raw: dict[str, RawMarket] = generated.raw
    if markets is not None:
        unknown = [m for m in markets if m not in raw]
        if unknown:
            raise DataError(f"synthetic data: no market {unknown[0]!r}; available markets: {', '.join(raw)}")
        raw = {m: raw[m] for m in markets}
    prepared = {name: prepare_market(r) for name, r in raw.items()}
    # A generated item nobody interacted with has no index, so its pairs cannot be evaluated.
    present = {(name, item) for name, m in prepared.items() for item in m.item_ids}
    pairs = generated.same_product
    keep = [(a, i) in present and (b, j) in present for a, i, b, j in pairs.itertuples(index=False)]
    pairs = pairs[keep]
    clusters = {
        name: np.array([generated.item_cluster[name][item] for item in m.item_ids], dtype=np.int32)
        for name, m in prepared.items()
    }
    return MarketSet(markets=prepared, same_item=_to_indices(pairs, prepared), item_cluster=clusters, source=SYNTHETIC)


def _identical_raw_items(markets: dict[str, Market]) -> pd.DataFrame:
    """Pairs of markets (in name order) sharing a raw item ID: how real data reveals the same product."""
    names = list(markets)
    frames = [
        pd.DataFrame({"market_a": a, "market_b": b, "item_a": shared, "item_b": shared})
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        for shared in [np.intersect1d(markets[a].item_ids, markets[b].item_ids)]
    ]
    pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=_PAIR_COLUMNS)
    return _to_indices(pairs, markets)


def _to_indices(pairs: pd.DataFrame, markets: dict[str, Market]) -> pd.DataFrame:
    """Raw item IDs → the per-market item indices that models and metrics use."""
    index = {name: {item: i for i, item in enumerate(m.item_ids)} for name, m in markets.items()}

    def column(side: str) -> np.ndarray:
        pairs_side = zip(pairs[f"market_{side}"], pairs[f"item_{side}"])
        return np.array([index[market][item] for market, item in pairs_side], dtype=np.int32)

    return pd.DataFrame(
        {
            "market_a": pairs["market_a"].to_numpy(dtype=object),
            "item_a": column("a"),
            "market_b": pairs["market_b"].to_numpy(dtype=object),
            "item_b": column("b"),
        }
    )
