"""CTR and ranking metrics, in numpy/sklearn so evaluation never needs TF or a TFF context.

Ranking metrics use the leave-one-out protocol: each row scores one held-out positive (column 0)
against sampled negatives (the other columns).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

_PROB_EPS = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC; tied scores count as half a correctly ordered pair (sklearn's rule)."""
    return float(roc_auc_score(np.asarray(labels), np.asarray(scores)))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy, natural log, with probs clipped to [1e-7, 1 - 1e-7].

    The clip keeps one confidently wrong prediction from making the mean infinite; it matches the
    epsilon Keras uses, so offline and in-training numbers agree.
    """
    clipped = np.clip(np.asarray(probs, dtype=np.float64), _PROB_EPS, 1.0 - _PROB_EPS)
    return float(log_loss(np.asarray(labels), clipped, labels=[0, 1]))


def positive_ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of column 0 among its row: negatives scoring strictly higher, plus ties.

    Ties count against the positive (pessimistic): otherwise a model that scores everything the
    same (e.g. collapsed embeddings) would rank every positive first and get HR = nDCG = 1.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be [n, 1 + negatives] with column 0 the positive, got shape {scores.shape}")
    return np.sum(scores[:, 1:] >= scores[:, :1], axis=1)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def hit_rate_at_k(scores: np.ndarray, k: int = 10) -> float:
    """Fraction of rows whose positive has rank < k (see `positive_ranks` for the tie rule)."""
    return hits_from_ranks(positive_ranks(scores), k)


def ndcg_at_k(scores: np.ndarray, k: int = 10) -> float:
    """Mean over rows of 1 / log2(rank + 2) if rank < k else 0: one relevant item, so IDCG = 1."""
    return ndcg_from_ranks(positive_ranks(scores), k)


def hits_from_ranks(ranks: np.ndarray, k: int) -> float:
    """Fraction of 0-based ranks below k. With one held-out item per user this is also Recall@k."""
    _check_k(k)
    return float(np.mean(np.asarray(ranks) < k))


def ndcg_from_ranks(ranks: np.ndarray, k: int) -> float:
    _check_k(k)
    ranks = np.asarray(ranks)
    return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


def summarize_markets(per_market: pd.DataFrame, weights: Mapping[str, float]) -> pd.DataFrame:
    """Appends rows `mean` (each market counts once) and `weighted_mean` (by `weights[market]`).

    Both are reported because they answer different questions: `mean` is what a small market
    experiences on average, `weighted_mean` is what the pooled interactions experience. Only numeric
    columns are averaged; other columns are left empty in the summary rows.
    """
    if "market" not in per_market.columns:
        raise ValueError(f"per_market needs a 'market' column, has {list(per_market.columns)}")
    markets = per_market["market"].astype(str)
    missing = sorted(set(markets) - set(weights))
    if missing:
        raise ValueError(f"no weight for market(s) {', '.join(missing)}")
    w = markets.map(weights).to_numpy(dtype=np.float64)
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("market weights must be non-negative and not all zero")
    numeric = per_market.select_dtypes(include="number").columns
    summary = pd.DataFrame(
        [
            {"market": "mean", **per_market[numeric].mean(axis=0).to_dict()},
            {"market": "weighted_mean", **{c: float(np.average(per_market[c], weights=w)) for c in numeric}},
        ]
    )
    return pd.concat([per_market, summary], ignore_index=True)
