"""Synthetic multi-market data with a planted, known collaborative structure.

Real XMarket data cannot say whether a federated model aligned the right things across markets;
here the answer is known. Each market's items fall into clusters: shared clusters 0..S-1 mean the
same taste in every market, local clusters exist in one market only. Each user mostly consumes one
cluster, so co-interaction reveals the clusters. Some shared-cluster items are "the same product" in
several markets. By default their raw IDs differ per market, so that table is hidden from training and
used only to measure alignment; with `common_keys` they carry one public key in every market, as
XMarket's ASINs do, so anchored mode can use it. `market_sizes` scales users and items per market
(`item_sizes`, when given, scales items on their own); `sized_config` shapes a set of a given total
interaction count for scaling measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tff_fedmm.data.loading import RawMarket
from tff_fedmm.errors import UsageError

_AFFINITY = 0.85  # share of a user's interactions drawn from their favourite cluster
_MIN_INTERACTIONS = 5
_START = np.datetime64("2014-01-01", "D")
_BLOCK_CELLS = 8_000_000  # users x items keys per block of the sampler (~64 MB of float64 each)


@dataclass(frozen=True)
class SyntheticConfig:
    num_markets: int = 4
    users_per_market: int = 400
    items_per_market: int = 300
    shared_clusters: int = 8
    local_clusters: int = 3
    interactions_per_user: int = 12
    popularity_exponent: float = 1.1
    shared_product_fraction: float = 0.5
    seed: int = 0
    # Identifiable shared structure (issue #12): > 0 gives every shared cluster a launch date common to
    # all markets, items launch within `launch_jitter_days` of it and are rated only after launch, so a
    # market-invariant item attribute (its time profile) drives the shared clusters. 0 keeps dates
    # independent of clusters (shared clusters then cannot be told apart without shared IDs).
    launch_jitter_days: int = 0
    # Linked products share the raw ID `p<cluster>-<slot>` in every market that carries them.
    common_keys: bool = False
    # Per-market factors on users_per_market and items_per_market (empty: every market full size).
    market_sizes: tuple[float, ...] = ()
    # Per-market factors on items_per_market alone (empty: market_sizes): markets' user and item counts
    # need not grow together (issue #15's target shape: users vary 2.6x across markets, items 8x).
    item_sizes: tuple[float, ...] = ()

    def users(self, market_index: int) -> int:
        return max(1, round(self.users_per_market * self._size(self.market_sizes, market_index)))

    def items(self, market_index: int) -> int:
        return max(1, round(self.items_per_market * self._size(self.item_sizes or self.market_sizes, market_index)))

    @staticmethod
    def _size(factors: tuple[float, ...], market_index: int) -> float:
        return factors[market_index] if factors else 1.0

    def __post_init__(self) -> None:
        clusters = self.shared_clusters + self.local_clusters
        for name, factors in (("market_sizes", self.market_sizes), ("item_sizes", self.item_sizes)):
            if len(factors) not in (0, self.num_markets) or not all(f > 0 for f in factors):
                raise UsageError(f"synthetic data: {name} must hold one positive factor per market")
        checks = [
            (self.num_markets >= 1, "num_markets must be 1 or more"),
            (self.users_per_market >= 1, "users_per_market must be 1 or more"),
            (clusters >= 1 and min(self.shared_clusters, self.local_clusters) >= 0, "need at least one cluster"),
            (min(map(self.items, range(self.num_markets))) >= clusters,
             "items_per_market must be at least one item per cluster in every market"),
            (
                _MIN_INTERACTIONS <= self.interactions_per_user <= min(map(self.items, range(self.num_markets))),
                f"interactions_per_user must be between {_MIN_INTERACTIONS} and every market's item count",
            ),
            (0.0 <= self.shared_product_fraction <= 1.0, "shared_product_fraction must be in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"synthetic data: {message}")


# Issue #15's target shape: 5 markets, 210k interactions, 2.7k-7.1k users and 1.2k-9.8k items per market.
# `sized_config` scales users and items linearly with the interaction count, so a scaling measurement
# grows the vocabularies with the data, as more interactions do in a real market.
_SHAPE_USERS = (2700, 3600, 4500, 5400, 7100)
_SHAPE_ITEMS = (1200, 2500, 4000, 6000, 9800)
_SHAPE_PER_USER = 9  # 23.3k users x 9 = the 210k interactions of the target shape
_MIN_SIZED_ITEMS = 200  # ranking evaluation draws 99 never-rated items per user: tiny sets must still see enough
# Below this, a tiny set's users see too few items for 99 ranking negatives (1,500 failed for seed 0; 2,000
# passed for seeds 0-5: `ranking_sets` on every market's valid and test split).
MIN_SIZED_INTERACTIONS = 2000


def sized_config(interactions: int, seed: int = 0) -> SyntheticConfig:
    """Five markets of different sizes holding about `interactions` interactions in all (within ~1%: the
    per-user counts are drawn), shaped like issue #15's target; below ~35k interactions the smallest
    markets keep `_MIN_SIZED_ITEMS` items."""
    if interactions < MIN_SIZED_INTERACTIONS:
        raise UsageError(f"synthetic data: a sized set needs {MIN_SIZED_INTERACTIONS} interactions or more (fewer "
                         f"leave users too few never-rated items for ranking evaluation), got {interactions}")
    scale = interactions / (_SHAPE_PER_USER * sum(_SHAPE_USERS))
    users = tuple(max(1.0, u * scale) for u in _SHAPE_USERS)
    items = tuple(max(float(_MIN_SIZED_ITEMS), i * scale) for i in _SHAPE_ITEMS)
    return SyntheticConfig(num_markets=len(_SHAPE_USERS), users_per_market=1, items_per_market=1,
                           interactions_per_user=_SHAPE_PER_USER, seed=seed, market_sizes=users, item_sizes=items)


@dataclass(frozen=True, eq=False)
class SyntheticData:
    raw: dict[str, RawMarket]
    item_cluster: dict[str, dict[str, int]]  # market → raw item id → ground-truth cluster
    same_product: pd.DataFrame  # market_a, item_a, market_b, item_b (raw ids); EVALUATION-ONLY


def generate_synthetic(config: SyntheticConfig = SyntheticConfig()) -> SyntheticData:
    raw, clusters, linked, ids = {}, {}, {}, {}
    for index in range(config.num_markets):
        # One generator per market: adding markets never changes the existing ones.
        rng = np.random.default_rng([config.seed, index])
        name = f"m{index}"
        cluster = _item_clusters(config, index, rng)
        launch = _item_launch_days(config, cluster, rng) if config.launch_jitter_days > 0 else None
        frame = _interactions(config, name, index, cluster, rng, launch)
        linked[name] = _linked_products(config, cluster, rng)
        ids[name] = [_item_id(name, i) for i in range(len(cluster))]
        if config.common_keys:
            for (c, slot), item in linked[name].items():
                ids[name][item] = f"p{c:03d}-{slot:05d}"
            frame["itemId"] = np.asarray(ids[name], dtype=object)[frame.pop("itemIndex").to_numpy()]
        else:
            frame["itemId"] = frame.pop("itemIndex").map(lambda i: _item_id(name, i))
        raw[name] = RawMarket(name=name, frame=frame[["userId", "itemId", "rate", "date"]], source="synthetic",
                              duplicates_dropped=0)
        clusters[name] = {ids[name][i]: int(c) for i, c in enumerate(cluster)}
    return SyntheticData(raw=raw, item_cluster=clusters, same_product=_same_product_table(linked, ids))


def _item_id(market: str, item: int) -> str:
    return f"{market}-i{item:05d}"


def _item_clusters(config: SyntheticConfig, market_index: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster label per item: equal-sized clusters, shuffled so item ids carry no cluster order.

    Markets of one size get the same count per shared cluster, so linked products pair up one-to-one;
    with `market_sizes`, a product slot links the markets whose cluster has that slot.
    """
    s, k = config.shared_clusters, config.shared_clusters + config.local_clusters
    labels = np.concatenate([np.arange(s), s + market_index * config.local_clusters + np.arange(config.local_clusters)])
    n = config.items(market_index)
    sizes = n // k + (np.arange(k) < n % k)
    return rng.permutation(np.repeat(labels, sizes))


def _item_launch_days(config: SyntheticConfig, cluster: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Days after _START each item launches: its cluster's launch (shared clusters: one date for every
    market, from a generator that depends on the seed only) plus this market's jitter."""
    clusters = config.shared_clusters + config.num_markets * config.local_clusters
    shared = np.random.default_rng([config.seed, 1_000_003]).integers(0, 4 * 365, clusters)
    own = rng.integers(0, 4 * 365, clusters)
    base = np.where(np.arange(clusters) < config.shared_clusters, shared, own)
    return base[cluster] + rng.integers(0, config.launch_jitter_days + 1, len(cluster))


def _interactions(config: SyntheticConfig, market: str, market_index: int, cluster: np.ndarray,
                  rng: np.random.Generator, launch: np.ndarray | None = None) -> pd.DataFrame:
    """Rows userId, itemIndex (the caller names items), rate, date."""
    labels, members = np.unique(cluster, return_inverse=True)
    # Power-law popularity within each cluster, over a random ranking of its items.
    popularity = np.empty(len(cluster))
    for c in range(len(labels)):
        idx = np.flatnonzero(members == c)
        popularity[idx] = rng.permutation(np.arange(1, len(idx) + 1)) ** -config.popularity_exponent
        popularity[idx] /= popularity[idx].sum()
    num_users = config.users(market_index)
    favourite = rng.integers(0, len(labels), size=num_users)
    extra = rng.poisson(config.interactions_per_user - _MIN_INTERACTIONS, num_users)
    counts = np.minimum(_MIN_INTERACTIONS + extra, len(cluster))
    users = np.repeat(np.arange(num_users), counts)
    items = _weighted_samples(popularity, members, favourite, len(labels), counts, rng)[users, _positions(counts)]
    # Random time order within each user, dates strictly increasing.
    order = np.lexsort((rng.random(len(users)), users))
    items = items[order]
    elapsed = np.cumsum(1 + rng.poisson(20, len(users)))
    elapsed -= np.repeat(elapsed[np.cumsum(counts) - counts], counts)
    days = _START + rng.integers(0, 5 * 365, num_users)[users] + elapsed
    if launch is not None:  # rated within about two months of launch; order within a user follows dates
        days = _START + launch[items] + rng.poisson(30, len(users))
    liked = members[items] == favourite[users]
    rate = np.where(liked, rng.choice([3, 4, 5], len(users), p=[0.1, 0.3, 0.6]), rng.integers(1, 6, len(users)))
    frame = pd.DataFrame(
        {
            "userId": [f"{market}-u{u:05d}" for u in users],
            "itemIndex": items,
            "rate": rate.astype(np.float32),
            "date": days.astype("datetime64[ns]"),
        }
    )
    # Rows in no particular order, like a real file; the splitter must not rely on it.
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def _weighted_samples(popularity: np.ndarray, members: np.ndarray, favourite: np.ndarray, num_clusters: int,
                      counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each user's first counts[u] columns: a sample without replacement weighted by popularity and affinity.

    Gumbel top-k over a users x items key matrix, built a block of users at a time so a million-interaction
    set does not need it whole in memory (the generator's stream does not depend on the block size: one
    draw per cell, row after row). Only the top max(counts) keys are sorted per user.
    """
    top = int(counts.max())
    ranked = np.empty((len(favourite), top), dtype=np.int64)
    rows = max(1, _BLOCK_CELLS // len(members))
    for start in range(0, len(favourite), rows):
        fav = favourite[start : start + rows]
        prob = (1 - _AFFINITY) / num_clusters * popularity[None, :] + _AFFINITY * popularity[None, :] * (
            members[None, :] == fav[:, None]
        )
        keys = -(np.log(prob) + rng.gumbel(size=prob.shape))
        part = np.argpartition(keys, top - 1, axis=1)[:, :top] if top < len(members) else np.tile(
            np.arange(len(members)), (len(fav), 1))
        order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1)
        ranked[start : start + rows] = np.take_along_axis(part, order, axis=1)
    return ranked


def _positions(counts: np.ndarray) -> np.ndarray:
    """0..counts[u]-1 for each user, concatenated."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


def _linked_products(
    config: SyntheticConfig, cluster: np.ndarray, rng: np.random.Generator
) -> dict[tuple[int, int], int]:
    """(shared cluster, product slot) → item: the same slot in two markets is the same product."""
    linked = {}
    for c in range(config.shared_clusters):
        idx = np.flatnonzero(cluster == c)
        chosen = rng.choice(idx, size=round(config.shared_product_fraction * len(idx)), replace=False)
        linked.update({(c, slot): int(item) for slot, item in enumerate(chosen)})
    return linked


def _same_product_table(linked: dict[str, dict[tuple[int, int], int]], ids: dict[str, list[str]]) -> pd.DataFrame:
    names = list(linked)
    rows = [
        (a, ids[a][item], b, ids[b][linked[b][product]])
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        for product, item in linked[a].items()
        if product in linked[b]
    ]
    return pd.DataFrame(rows, columns=["market_a", "item_a", "market_b", "item_b"])
