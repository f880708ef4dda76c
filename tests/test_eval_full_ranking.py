"""Full-catalogue ranking metrics against a brute-force loop, and evaluation candidates shared by seeds."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tff_fedmm.data.markets import load_markets
from tff_fedmm.data.synthetic import SyntheticConfig
from tff_fedmm.eval import evaluate
from tff_fedmm.eval.evaluate import evaluate_market, full_ranks


class TableModel:
    """Scores from a fixed user × item table, coarsely rounded so that ties occur."""

    input_names = ["user", "item"]

    def __init__(self, table: np.ndarray):
        self.table = table

    def __call__(self, inputs, training=False):
        return tf.constant(self.table[inputs["user"], inputs["item"]])


@pytest.fixture(scope="module")
def tiny():
    config = SyntheticConfig(num_markets=2, users_per_market=60, items_per_market=240, interactions_per_user=6)
    return load_markets("synthetic", synthetic=config).markets["m0"]


def brute_force_ranks(table: np.ndarray, market) -> list[int]:
    positives = {}
    for frame in (market.train, market.valid, market.test):
        for u, i in zip(frame["user"], frame["item"]):
            positives.setdefault(int(u), set()).add(int(i))
    ranks = []
    for u, held in zip(market.test["user"], market.test["item"]):
        others = [i for i in range(market.num_items) if i not in positives[int(u)]]
        ranks.append(sum(table[u, i] >= table[u, held] for i in others))
    return ranks


def test_full_ranking_matches_brute_force(tiny, monkeypatch):
    table = np.round(np.random.default_rng(0).random((tiny.num_users, tiny.num_items)), 2).astype(np.float32)
    expected = np.array(brute_force_ranks(table, tiny))
    monkeypatch.setattr(evaluate, "_FULL_CHUNK", 3 * tiny.num_items + 5)  # several chunks, the last one short
    np.testing.assert_array_equal(full_ranks(TableModel(table), tiny, "test"), expected)
    metrics = evaluate_market(TableModel(table), tiny, "test")
    assert metrics["hr@10_full"] == pytest.approx(np.mean(expected < 10))
    assert metrics["recall@20_full"] == pytest.approx(np.mean(expected < 20))
    assert metrics["ndcg@10_full"] == pytest.approx(np.mean(np.where(expected < 10, 1 / np.log2(expected + 2), 0)))
    assert 0 < metrics["hr@10_full"] < 1  # the table is neither perfect nor hopeless: the check is not vacuous


def test_two_training_seeds_share_every_evaluation_candidate_set(tiny, monkeypatch):
    """Local training with seeds 0 and 1: every valid/test CTR example set and 1+99 ranking set it scores
    on is identical, while the training examples differ."""
    from tff_fedmm.api import make_config
    from tff_fedmm.data.markets import MarketSet
    from tff_fedmm.pipelines import ctr_stage

    seen: dict[int, list] = {}
    real_ctr, real_ranking = evaluate.ctr_examples, evaluate.ranking_sets

    def spy_ctr(market, split, **kw):
        out = real_ctr(market, split, **kw)
        seen[current].append(("ctr", split, out["user"].tobytes(), out["item"].tobytes()))
        return out

    def spy_ranking(market, split, **kw):
        users, items = real_ranking(market, split, **kw)
        seen[current].append(("ranking", split, users.tobytes(), items.tobytes()))
        return users, items

    monkeypatch.setattr(evaluate, "ctr_examples", spy_ctr)
    monkeypatch.setattr(evaluate, "ranking_sets", spy_ranking)
    market_set = MarketSet(markets={"m0": tiny}, same_item=None, item_cluster=None, source="synthetic")
    train = {}
    for current in (0, 1):
        seen[current] = []
        config = make_config(current, rounds=2).ctr
        ctr_stage.train_local(market_set, "deepfm", ctr_stage.CodeUse(), config, (0, 0))
        train[current] = real_ctr(tiny, "train", seed=config.train.seed)["item"]
    assert {kind for kind, *_ in seen[0]} == {"ctr", "ranking"}
    assert seen[0] == seen[1]
    assert not np.array_equal(train[0], train[1])


def test_held_out_auc_scores_only_positives_on_the_held_out_items(tiny):
    """A table that ranks held-out items' interactions perfectly and every other positive last: the
    held-out AUC is 1 and the overall AUC is not; without a mask it is NaN."""
    from tff_fedmm.data.sampling import ctr_examples

    held = np.zeros(tiny.num_items, bool)
    held[::3] = True
    table = np.full((tiny.num_users, tiny.num_items), 0.5, np.float32)
    ex = ctr_examples(tiny, "test")
    positive = ex["label"] == 1
    table[ex["user"][positive], ex["item"][positive]] = np.where(held[ex["item"][positive]], 0.9, 0.1)
    metrics = evaluate_market(TableModel(table), tiny, "test", held_out=held)
    assert metrics["auc_held_out"] == 1.0 and metrics["auc"] < 0.9
    assert np.isnan(evaluate_market(TableModel(table), tiny, "test")["auc_held_out"])
    assert np.isnan(evaluate_market(TableModel(table), tiny, "test", held_out=np.zeros_like(held))["auc_held_out"])
