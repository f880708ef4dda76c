import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, raw_market

from tff_fedmm.data.sampling import ctr_examples, ranking_sets
from tff_fedmm.data.splits import prepare_market
from tff_fedmm.errors import DataError


def keys(market, users, items):
    return users.astype(np.int64) * market.num_items + items


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_positives_then_negatives_never_excluded(synthetic_set, split):
    """Train negatives avoid train positives only; valid/test negatives avoid every positive."""
    market = synthetic_set.markets["m0"]
    excluded = market.train_interacted if split == "train" else market.interacted
    ex = ctr_examples(market, split, neg_ratio=4)
    assert ex["user"].dtype == np.int32 and ex["item"].dtype == np.int32 and ex["label"].dtype == np.float32
    positives = market.split(split)
    assert ex["label"].sum() == len(positives)
    assert len(ex["label"]) == 5 * len(positives)
    negative = ex["label"] == 0
    assert not np.isin(keys(market, ex["user"][negative], ex["item"][negative]), excluded).any()
    assert np.isin(keys(market, ex["user"][~negative], ex["item"][~negative]), excluded).all()
    # Each positive's user gets exactly neg_ratio negatives.
    np.testing.assert_array_equal(np.bincount(ex["user"][negative]), 4 * np.bincount(positives["user"]))


def test_the_training_sampler_can_draw_a_held_out_item():
    """A user whose only non-train items are held out gets them as train negatives (no leak by absence)."""
    rows = [("u", f"i{k}", f"2020-01-{k + 1:02d}") for k in range(6)] + [("v", "i0", "2020-01-01")]
    market = prepare_market(raw_market(rows))
    user = int(np.flatnonzero(market.user_ids == "u")[0])
    held = {int(market.valid.loc[market.valid["user"] == user, "item"].iloc[0]),
            int(market.test.loc[market.test["user"] == user, "item"].iloc[0])}
    assert market.num_items == 6  # u touched every item: only its 2 held-out items are not train positives
    ex = ctr_examples(market, "train", neg_ratio=4, seed=3)
    drawn = set(ex["item"][(ex["label"] == 0) & (ex["user"] == user)].tolist())
    assert drawn == held
    assert not ((ctr_examples(market, "test", neg_ratio=4)["label"] == 0)
                & (ctr_examples(market, "test", neg_ratio=4)["user"] == user)).any()


def test_train_negatives_change_by_epoch_eval_ones_do_not(synthetic_set):
    market = synthetic_set.markets["m2"]
    same = lambda a, b: all(np.array_equal(a[k], b[k]) for k in a)  # noqa: E731
    assert same(ctr_examples(market, "train", epoch=3), ctr_examples(market, "train", epoch=3))
    assert not same(ctr_examples(market, "train", epoch=0), ctr_examples(market, "train", epoch=1))
    for split in ("valid", "test"):
        assert same(ctr_examples(market, split, epoch=0), ctr_examples(market, split, epoch=7))
        assert not same(ctr_examples(market, split, seed=0), ctr_examples(market, split, seed=1))


def test_seed_derivation_does_not_depend_on_python_hash():
    script = (
        "from tff_fedmm.data import load_markets, ctr_examples;"
        "print(ctr_examples(load_markets().markets['m0'], 'valid')['item'][-20:].tolist())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def saturated_market():
    rows = [("full", item, f"2020-01-0{day}") for day, item in enumerate("ABCD", start=1)]
    rows += [("most", item, f"2020-01-0{day}") for day, item in enumerate("ABC", start=1)]
    return prepare_market(raw_market(rows))


def test_users_who_saw_every_item_are_handled():
    market = saturated_market()
    ex = ctr_examples(market, "valid", neg_ratio=3)  # evaluation negatives avoid every positive
    most = int(np.flatnonzero(market.user_ids == "most")[0])
    negative = ex["label"] == 0
    assert set(ex["user"][negative]) == {most}
    assert market.item_ids[ex["item"][negative]].tolist() == ["D"] * 3  # only D is left for "most"
    with pytest.raises(DataError, match="has only 0 items"):
        ranking_sets(market, "test", num_negatives=1)


def test_ranking_sets(synthetic_set):
    market = synthetic_set.markets["m3"]
    users, items = ranking_sets(market, "test", num_negatives=99)
    assert users.shape == (len(market.test),) and items.shape == (len(market.test), 100)
    np.testing.assert_array_equal(items[:, 0], market.test["item"])
    assert all(len(set(row)) == 100 for row in items)
    negatives = items[:, 1:]
    assert not np.isin(keys(market, users[:, None], negatives), market.interacted).any()
    again_users, again = ranking_sets(market, "test", num_negatives=99)
    np.testing.assert_array_equal(again, items)
    assert not np.array_equal(ranking_sets(market, "test", seed=1)[1], items)


def test_ranking_sets_when_negatives_nearly_exhaust_the_catalog(synthetic_set):
    market = synthetic_set.markets["m0"]
    fewest = int((market.num_items - np.bincount(market.interacted // market.num_items)).min())
    users, items = ranking_sets(market, "valid", num_negatives=fewest)
    assert all(len(set(row)) == fewest + 1 for row in items)
    assert not np.isin(keys(market, users[:, None], items[:, 1:]), market.interacted).any()
