"""Anchored mode's agreed anchor list: public items carried by two or more markets, and the held-out share.

In anchored mode (`--anchors public-items`) markets may use the public key of an item (its ASIN) when the
item is sold in two or more markets; users and market-only items stay private. Agreeing on the list
reveals which public products each market carries (a real deployment would run a private set
intersection over the hashed keys; here the driver computes the list from the data, which is the same
outcome). Nothing keyed crosses during training: a market refers to an anchor only by its *slot*, a
position in the agreed list (or a hash bucket of it, to bound the upload).

A fixed share of the recurring items is never an anchor (`held_out`): alignment and transfer are
measured on those, so the mode is judged on what it was not told. The split depends on the data seed
only (`seeding.derive_rng`), so every method and training seed shares it.

Which items recur: `MarketSet.same_item`, the pairs of per-market item indices that are one product
(identical raw IDs on real data; the generator's linked products on synthetic data, whose raw IDs differ
per market). A product is a connected group of such pairs; its public key is its smallest
`market:raw id` member, which on real data carries the ASIN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tff_fedmm.data.markets import MarketSet
from tff_fedmm.seeding import derive_rng, derive_seed

HELD_OUT_SHARE = 0.3
ANCHOR_MODES = ("none", "public-items")


@dataclass(frozen=True)
class AnchorSplit:
    keys: list[str]  # public keys of the anchors, in the agreed order (driver-side only; never crosses)
    num_slots: int  # slots a market sends per round: len(keys), or the bucket count when hashed
    item_slot: dict[str, np.ndarray]  # per market and item index: its slot, -1 if not an anchor
    held_out: dict[str, np.ndarray]  # per market and item index: recurring but never an anchor

    def row_slots(self, market: str, num_users: int) -> np.ndarray:
        """Slots for the RQ-VAE input rows of `market` (users, all -1, then items)."""
        return np.concatenate([np.full(num_users, -1, np.int32), self.item_slot[market]])


def recurring_products(market_set: MarketSet) -> dict[str, list[tuple[str, int]]]:
    """Public key → its (market, item index) members, over every product in two or more markets."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    same = market_set.same_item if market_set.same_item is not None else ()  # a hand-built set may have none
    for a, i, b, j in (same.itertuples(index=False) if len(same) else ()):
        ra, rb = find((a, int(i))), find((b, int(j)))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)
    products = {}
    for members in groups.values():
        key = min(f"{m}:{market_set.markets[m].item_ids[i]}" for m, i in members)
        products[key] = sorted(members)
    return dict(sorted(products.items()))


def public_anchors(market_set: MarketSet, data_seed: int, held_out_share: float = HELD_OUT_SHARE,
                   max_slots: int | None = None) -> AnchorSplit:
    """The agreed anchors and held-out recurring items; `max_slots` hashes keys into that many buckets
    when there are more anchors (one bucket then averages the anchors it holds)."""
    if not 0.0 <= held_out_share < 1.0:
        raise ValueError(f"held_out_share must be in [0, 1), got {held_out_share}")
    products = recurring_products(market_set)
    keys = list(products)
    order = derive_rng(data_seed, "anchors-held-out").permutation(len(keys))
    held = {keys[p] for p in order[: int(round(held_out_share * len(keys)))]}
    anchors = [k for k in keys if k not in held]
    hashed = max_slots is not None and len(anchors) > max_slots
    num_slots = max_slots if hashed else len(anchors)
    item_slot = {n: np.full(m.num_items, -1, np.int32) for n, m in market_set.markets.items()}
    held_out = {n: np.zeros(m.num_items, bool) for n, m in market_set.markets.items()}
    for position, key in enumerate(anchors):
        slot = derive_seed("anchor-bucket", key) % max_slots if hashed else position
        for market, item in products[key]:
            item_slot[market][item] = slot
    for key in held:
        for market, item in products[key]:
            held_out[market][item] = True
    return AnchorSplit(keys=anchors, num_slots=num_slots, item_slot=item_slot, held_out=held_out)


def held_out_pairs(market_set: MarketSet, split: AnchorSplit) -> pd.DataFrame:
    """The rows of `market_set.same_item` whose items are held out (never anchors) on both sides: where
    anchored mode's alignment is scored."""
    same = market_set.same_item
    keep = [bool(split.held_out[a][i] and split.held_out[b][j]) for a, i, b, j in same.itertuples(index=False)]
    return same[np.array(keep, bool)] if len(same) else same
