"""Market-invariant descriptors: computed from a market's own train split, blind to every identifier."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tff_fedmm.data.descriptors import DESCRIPTORS, entity_descriptors
from tff_fedmm.data.loading import RawMarket
from tff_fedmm.data.splits import prepare_market
from tff_fedmm.data.synthetic import SyntheticConfig, generate_synthetic


def one_market() -> RawMarket:
    return generate_synthetic(SyntheticConfig(num_markets=1, users_per_market=60, items_per_market=40)).raw["m0"]


def renamed(raw: RawMarket, seed: int) -> tuple[RawMarket, dict[str, str]]:
    """The same market with every user and item key replaced by an unrelated random string."""
    rng = np.random.default_rng(seed)
    frame = raw.frame.copy()
    items = {i: f"X{rng.integers(1 << 40):012d}" for i in frame.itemId.unique()}
    users = {u: f"U{rng.integers(1 << 40):012d}" for u in frame.userId.unique()}
    frame["itemId"], frame["userId"] = frame.itemId.map(items), frame.userId.map(users)
    return RawMarket(raw.name, frame, raw.source, raw.duplicates_dropped), items


def test_descriptors_do_not_depend_on_item_or_user_keys():
    """Strict mode: no item key (ASIN) or key-derived value (its index, its sort order) reaches the input."""
    raw = one_market()
    market = prepare_market(raw)
    other_raw, items = renamed(raw, seed=1)
    other = prepare_market(other_raw)
    assert not np.array_equal(np.argsort([items[i] for i in market.item_ids]), np.arange(market.num_items))
    users_a, items_a = entity_descriptors(market)
    users_b, items_b = entity_descriptors(other)
    index_b = {key: i for i, key in enumerate(other.item_ids)}
    np.testing.assert_allclose(items_a, items_b[[index_b[items[k]] for k in market.item_ids]], atol=1e-6)
    # Users: compare as a multiset of rows (their order follows the renamed keys).
    np.testing.assert_allclose(np.sort(users_a, axis=0), np.sort(users_b, axis=0), atol=1e-6)


def test_descriptors_read_the_train_split_only():
    market = prepare_market(one_market())
    later = pd.Timedelta(days=3000)
    moved = prepare_market(RawMarket("m0", one_market().frame, "synthetic", 0))
    moved.valid["date"] = moved.valid["date"] + later
    moved.test["date"] = moved.test["date"] + later
    for a, b in zip(entity_descriptors(market), entity_descriptors(moved)):
        np.testing.assert_array_equal(a, b)


def test_descriptor_shapes_and_scales():
    market = prepare_market(one_market())
    users, items = entity_descriptors(market)
    assert users.shape == (market.num_users, len(DESCRIPTORS)) and items.shape == (market.num_items, len(DESCRIPTORS))
    assert np.isfinite(users).all() and np.isfinite(items).all()
    assert np.abs(items[:, 0]).max() <= np.sqrt(3.0) + 1e-6  # centred unit-variance quantile
