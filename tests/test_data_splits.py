import numpy as np
import pandas as pd

from conftest import raw_market

from tff_fedmm.data.loading import RawMarket
from tff_fedmm.data.splits import prepare_market


TIES = raw_market(
    [
        ("alice", "A", "2020-01-01"),
        ("bob", "A", "2020-01-01"),
        ("alice", "B", "2020-01-03"),
        ("alice", "C", "2020-01-03"),  # same date as B, later in the file: B is valid, C is test
        ("alice", "D", "2020-01-02"),
        ("alice", "A", "2020-01-05"),  # a repeat: keeps its first date, must not become the test item
        ("bob", "B", "2020-01-02"),  # bob has two items: no valid/test
    ]
)


def held_out(market, split: str) -> dict[str, str]:
    frame = market.split(split)
    return dict(zip(market.user_ids[frame["user"]], market.item_ids[frame["item"]]))


def test_last_two_by_date_with_file_order_breaking_ties():
    market = prepare_market(TIES)
    assert held_out(market, "test") == {"alice": "C"}
    assert held_out(market, "valid") == {"alice": "B"}
    train = market.train
    assert sorted(market.item_ids[train.loc[train["user"] == 0, "item"]]) == ["A", "D"]


def test_short_histories_stay_in_train():
    market = prepare_market(TIES)
    bob = int(np.flatnonzero(market.user_ids == "bob")[0])
    assert (market.train["user"] == bob).sum() == 2
    assert market.num_interactions == 6  # the repeated (alice, A) counts once


def test_columns_and_interacted_keys():
    market = prepare_market(TIES)
    for split in ("train", "valid", "test"):
        frame = market.split(split)
        assert list(frame.columns) == ["user", "item", "rate", "date"]
        assert frame["user"].dtype == np.int32 and frame["item"].dtype == np.int32
    every = pd.concat([market.train, market.valid, market.test])
    keys = every["user"].to_numpy(np.int64) * market.num_items + every["item"].to_numpy(np.int64)
    np.testing.assert_array_equal(market.interacted, np.sort(keys))
    assert market.interacted.dtype == np.int64


def test_held_out_items_never_in_the_users_train(synthetic_set):
    for market in synthetic_set.markets.values():
        train_keys = set(zip(market.train["user"], market.train["item"]))
        for split in ("valid", "test"):
            held = market.split(split)
            assert not set(zip(held["user"], held["item"])) & train_keys
            assert held["user"].is_unique


def test_held_out_are_the_latest(synthetic_set):
    market = synthetic_set.markets["m0"]
    last_train = market.train.groupby("user")["date"].max()
    valid = market.valid.set_index("user")["date"]
    test = market.test.set_index("user")["date"]
    assert (last_train[valid.index] <= valid).all() and (valid <= test[valid.index]).all()


def test_vocabularies_are_per_market_and_sorted():
    a = prepare_market(raw_market([("u1", "X", "2020-01-01"), ("u1", "Y", "2020-01-02"), ("u1", "W", "2020-01-03")]))
    b = prepare_market(raw_market([("v1", "Z", "2020-01-01"), ("v1", "Y", "2020-01-02"), ("v1", "Q", "2020-01-03")]))
    assert a.item_ids.tolist() == ["W", "X", "Y"] and b.item_ids.tolist() == ["Q", "Y", "Z"]
    assert a.num_items == 3 and b.num_items == 3


def test_independent_of_row_order_and_other_markets(synthetic_set):
    from tff_fedmm.data.markets import load_markets
    from tff_fedmm.data.synthetic import generate_synthetic

    raw = generate_synthetic().raw["m1"]
    shuffled = RawMarket("m1", raw.frame.sample(frac=1, random_state=3), raw.source, 0)
    pd.testing.assert_frame_equal(prepare_market(shuffled).test, prepare_market(raw).test)

    alone = load_markets("synthetic", ["m1"]).markets["m1"]
    together = synthetic_set.markets["m1"]
    np.testing.assert_array_equal(alone.item_ids, together.item_ids)
    pd.testing.assert_frame_equal(alone.test, together.test)
    a, b = synthetic_set.markets["m0"], synthetic_set.markets["m1"]
    assert not np.intersect1d(a.item_ids, b.item_ids).size and not np.intersect1d(a.user_ids, b.user_ids).size
