import math

import numpy as np
import pandas as pd
import pytest

from tff_fedmm.eval.metrics import auc, hit_rate_at_k, logloss, ndcg_at_k, positive_ranks, summarize_markets


def test_auc_counts_ties_as_half():
    # pos/neg pairs: (.5>.1)=1, (.5=.5)=.5, (.9>.1)=1, (.9>.5)=1 -> 3.5 / 4
    assert auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(0.875)


def test_logloss_by_hand_and_clipped():
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert logloss([1, 0], [0.0, 0.0]) == pytest.approx((-math.log(1e-7) - math.log(1 - 1e-7)) / 2)


def _row(above: int, ties: int, width: int = 100) -> np.ndarray:
    row = np.full(width, 0.1)
    row[0] = 0.5
    row[1 : 1 + above] = 0.9
    row[1 + above : 1 + above + ties] = 0.5
    return row


def test_hr_and_ndcg_at_10_with_pessimistic_ties():
    scores = np.stack([_row(0, 0), _row(9, 0), _row(5, 5)])  # ranks 0, 9, 10
    np.testing.assert_array_equal(positive_ranks(scores), [0, 9, 10])
    assert hit_rate_at_k(scores, k=10) == pytest.approx(2 / 3)
    assert ndcg_at_k(scores, k=10) == pytest.approx((1 + 1 / math.log2(11)) / 3)


def test_hr_and_ndcg_small_k():
    scores = np.array([[0.9, 0.1, 0.2, 0.3], [0.5, 0.6, 0.5, 0.1], [0.2, 0.3, 0.4, 0.5]])  # ranks 0, 2, 3
    assert hit_rate_at_k(scores, k=3) == pytest.approx(2 / 3)
    assert ndcg_at_k(scores, k=3) == pytest.approx((1 + 1 / math.log2(4)) / 3)


def test_constant_scores_never_hit():
    assert hit_rate_at_k(np.zeros((5, 100)), k=10) == 0.0


def test_ranking_rejects_bad_shapes_and_k():
    with pytest.raises(ValueError, match="column 0"):
        hit_rate_at_k(np.zeros(10))
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(np.zeros((2, 5)), k=0)


def test_summarize_markets_appends_mean_and_weighted_mean():
    per_market = pd.DataFrame({"market": ["a", "b"], "auc": [0.6, 0.8], "hr10": [0.2, 0.4]})
    out = summarize_markets(per_market, {"a": 1.0, "b": 3.0})
    assert list(out["market"]) == ["a", "b", "mean", "weighted_mean"]
    summary = out.set_index("market")
    assert summary.loc["mean", "auc"] == pytest.approx(0.7)
    assert summary.loc["weighted_mean", "auc"] == pytest.approx(0.75)
    assert summary.loc["weighted_mean", "hr10"] == pytest.approx(0.35)


def test_summarize_markets_requires_every_weight():
    with pytest.raises(ValueError, match="no weight for market"):
        summarize_markets(pd.DataFrame({"market": ["a", "b"], "auc": [0.6, 0.8]}), {"a": 1.0})
