import time

import numpy as np
import pandas as pd
import pytest

from tff_fedmm.data.synthetic import SyntheticConfig, generate_synthetic
from tff_fedmm.errors import UsageError

CONFIG = SyntheticConfig()


@pytest.fixture(scope="module")
def data():
    return generate_synthetic(CONFIG)


def test_deterministic_by_seed_and_fast(data):
    start = time.perf_counter()
    again = generate_synthetic(CONFIG)
    assert time.perf_counter() - start < 1.0
    for name in data.raw:
        pd.testing.assert_frame_equal(data.raw[name].frame, again.raw[name].frame)
    pd.testing.assert_frame_equal(data.same_product, again.same_product)
    other = generate_synthetic(SyntheticConfig(seed=1))
    assert not data.raw["m0"].frame.equals(other.raw["m0"].frame)


def test_markets_ids_ratings_and_dates(data):
    assert list(data.raw) == ["m0", "m1", "m2", "m3"]
    for name, raw in data.raw.items():
        frame = raw.frame
        assert frame["userId"].str.match(rf"{name}-u\d{{5}}$").all()
        assert frame["itemId"].str.match(rf"{name}-i\d{{5}}$").all()
        assert frame["rate"].between(1, 5).all() and frame["rate"].dtype == np.float32
        per_user = frame.sort_values("date").groupby("userId")
        assert (per_user.size() >= 5).all()
        assert per_user["date"].apply(lambda d: d.is_monotonic_increasing and d.is_unique).all()
        assert not frame.duplicated(["userId", "itemId"]).any()
    assert 11 <= np.mean([len(r.frame) / CONFIG.users_per_market for r in data.raw.values()]) <= 13


def test_cluster_labels(data):
    s, local = CONFIG.shared_clusters, CONFIG.local_clusters
    local_labels = []
    for name, clusters in data.item_cluster.items():
        labels = set(clusters.values())
        assert set(range(s)) <= labels  # every shared cluster exists in every market
        local_labels.append(labels - set(range(s)))
        assert len(local_labels[-1]) == local and min(local_labels[-1]) >= s
        assert set(data.raw[name].frame["itemId"]) <= set(clusters)
    assert len(set.union(*local_labels)) == local * CONFIG.num_markets  # distinct across markets


def test_same_product_pairs_share_a_shared_cluster(data):
    pairs = data.same_product
    assert list(pairs.columns) == ["market_a", "item_a", "market_b", "item_b"]
    a = [data.item_cluster[m][i] for m, i in zip(pairs["market_a"], pairs["item_a"])]
    b = [data.item_cluster[m][i] for m, i in zip(pairs["market_b"], pairs["item_b"])]
    assert a == b and max(a) < CONFIG.shared_clusters
    for name, clusters in data.item_cluster.items():
        shared_items = [i for i, c in clusters.items() if c < CONFIG.shared_clusters]
        linked = {*pairs.loc[pairs["market_a"] == name, "item_a"], *pairs.loc[pairs["market_b"] == name, "item_b"]}
        assert abs(len(linked) / len(shared_items) - CONFIG.shared_product_fraction) < 0.05


def test_users_mostly_stick_to_one_cluster(data):
    frame = data.raw["m0"].frame
    cluster = frame["itemId"].map(data.item_cluster["m0"])
    top_share = cluster.groupby(frame["userId"]).agg(lambda c: c.value_counts(normalize=True).iloc[0])
    assert top_share.mean() > 0.7  # uniform choice over 11 clusters would give about 0.25


def test_bad_config_is_a_usage_error():
    with pytest.raises(UsageError, match="interactions_per_user"):
        SyntheticConfig(interactions_per_user=2)


def test_common_keys_name_linked_products_alike_so_the_real_data_route_finds_them():
    """With common keys the linked products carry one public key per product, and loading them like real
    data (pairs of identical raw IDs) finds exactly the generator's table; other items keep market IDs."""
    from tff_fedmm.data.markets import _identical_raw_items, load_markets

    config = SyntheticConfig(common_keys=True)
    data = generate_synthetic(config)
    pairs = data.same_product
    assert len(pairs) > 100 and (pairs["item_a"] == pairs["item_b"]).all()
    assert pairs["item_a"].str.match(r"p\d{3}-\d{5}$").all()
    plain = generate_synthetic(CONFIG)  # the same interactions, only item names differ
    for name in data.raw:
        a, b = data.raw[name].frame, plain.raw[name].frame
        pd.testing.assert_frame_equal(a.drop(columns="itemId"), b.drop(columns="itemId"))
        assert a["itemId"].nunique() == b["itemId"].nunique()
        assert a["itemId"].str.match(rf"({name}-i\d{{5}}|p\d{{3}}-\d{{5}})$").all()
    market_set = load_markets("synthetic", synthetic=config)
    by_key = _identical_raw_items(market_set.markets)
    key = ["market_a", "item_a", "market_b", "item_b"]
    pd.testing.assert_frame_equal(by_key[key].sort_values(key).reset_index(drop=True),
                                  market_set.same_item[key].sort_values(key).reset_index(drop=True),
                                  check_dtype=False)


def test_market_sizes_scale_users_and_items_per_market():
    config = SyntheticConfig(num_markets=3, market_sizes=(1.0, 0.5, 2.0), common_keys=True)
    data = generate_synthetic(config)
    users = [data.raw[n].frame["userId"].nunique() for n in data.raw]
    items = [len(data.item_cluster[n]) for n in data.raw]
    assert users == [400, 200, 800] and items == [300, 150, 600]
    # the small market carries fewer linked products, so some pairs exist only between the larger two
    per_pair = data.same_product.groupby(["market_a", "market_b"]).size()
    assert per_pair["m0", "m2"] > per_pair["m0", "m1"]
    with pytest.raises(UsageError, match="market_sizes"):
        SyntheticConfig(num_markets=3, market_sizes=(1.0, 2.0))
    with pytest.raises(UsageError, match="item per cluster"):
        SyntheticConfig(items_per_market=20, market_sizes=(1.0, 0.1, 1.0, 1.0))
