import time

import numpy as np
import pandas as pd
import pytest

from tff_fedmm.data import synthetic
from tff_fedmm.data.loading import load_market_dir, write_market_dir
from tff_fedmm.data.synthetic import SyntheticConfig, generate_synthetic, sized_config
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


def test_item_sizes_scale_items_alone():
    data = generate_synthetic(SyntheticConfig(num_markets=2, market_sizes=(1.0, 0.5), item_sizes=(0.5, 2.0)))
    assert [data.raw[n].frame["userId"].nunique() for n in data.raw] == [400, 200]
    assert [len(data.item_cluster[n]) for n in data.raw] == [150, 600]
    with pytest.raises(UsageError, match="item_sizes"):
        SyntheticConfig(num_markets=2, item_sizes=(1.0, -1.0))


def test_sampler_blocks_do_not_change_the_data(monkeypatch):
    config = SyntheticConfig(num_markets=2, seed=4)
    whole = generate_synthetic(config)
    monkeypatch.setattr(synthetic, "_BLOCK_CELLS", 1000)  # ~3 users per block
    blocked = generate_synthetic(config)
    for name in whole.raw:
        pd.testing.assert_frame_equal(whole.raw[name].frame, blocked.raw[name].frame)


@pytest.mark.parametrize("interactions", [2000, 20000])
def test_sized_config_holds_about_that_many_interactions_in_five_unequal_markets(interactions):
    config = sized_config(interactions, seed=1)
    data = generate_synthetic(config)
    total = sum(len(raw.frame) for raw in data.raw.values())
    assert abs(total - interactions) <= 0.03 * interactions
    users = [raw.frame["userId"].nunique() for raw in data.raw.values()]
    items = [config.items(i) for i in range(config.num_markets)]
    assert len(users) == 5 and users == sorted(users) and users[-1] > 2 * users[0]
    assert min(items) >= 200 and items == sorted(items)  # enough items for 99 ranking negatives per user
    with pytest.raises(UsageError, match="interactions"):
        sized_config(1500)


def test_written_market_files_read_back_identical(tmp_path):
    data = generate_synthetic(sized_config(2000))
    paths = write_market_dir(data.raw, tmp_path / "set")
    assert sorted(p.name for p in paths.values()) == [f"m{i}_5core.txt" for i in range(5)]
    assert paths["m0"].read_text().splitlines()[0] == "userId itemId rate date"
    back = load_market_dir(tmp_path / "set")
    for name, raw in data.raw.items():
        pd.testing.assert_frame_equal(raw.frame, back[name].frame)
