"""Scores one market's model on a split: AUC/LogLoss on CTR examples, HR@10/nDCG@10 on 1+99 sets, and
HR@10/nDCG@10/Recall@20 of the held-out item ranked against the full catalogue.

`auc_held_out` is the AUC of the positives whose item is in a given set against every negative: the
recurring items that anchored mode never uses as anchors (`data.anchors`), where transfer is judged.

Sampled metrics (4 drawn negatives for AUC, 99 for nDCG) can order models differently from the full
catalogue; our catalogues are small enough (≤ 10k items) to rank in full, so both are reported. Every
candidate set is drawn from the DATA seed: all training seeds are scored on the same candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from tff_fedmm.data.sampling import ctr_examples, ranking_sets
from tff_fedmm.data.splits import Market
from tff_fedmm.eval.metrics import auc, hit_rate_at_k, hits_from_ranks, logloss, ndcg_at_k, ndcg_from_ranks

Featurize = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
METRICS = ("auc", "logloss", "hr@10", "ndcg@10", "hr@10_full", "ndcg@10_full", "recall@20_full", "auc_held_out")
_FULL_CHUNK = 1 << 18  # user × item scores per model call in full ranking: a few MB of inputs


def predict(model, features: Mapping[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
    """The model's probabilities, by direct calls on chunks of `batch_size`.

    Not `model.predict`: federated rounds evaluate every market every round, and each `predict` call
    builds a data adapter and an iterator that cost ~60 ms and ~0.36 MB that are never given back (RSS
    grew ~1.4 MB per round); a direct call costs ~5 ms and does not grow (`fedmm bench`, BUILD_NOTES).
    """
    inputs = {name: np.asarray(features[name]) for name in model.input_names}
    n = len(next(iter(inputs.values())))
    chunks = [model({k: v[i:i + batch_size] for k, v in inputs.items()}, training=False).numpy().reshape(-1)
              for i in range(0, n, batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def evaluate_market(model, market: Market, split: str, featurize: Featurize = dict, data_seed: int = 0,
                    ranking: bool = True, held_out: np.ndarray | None = None) -> dict[str, float]:
    """`featurize` adds whatever the model reads beyond (user, item), e.g. code fields or hashed IDs.
    `ranking=False` (per-round validation) computes AUC and LogLoss only. `held_out`, a mask over the
    market's items, adds `auc_held_out` (NaN without a mask or without such a positive)."""
    ex = ctr_examples(market, split, seed=data_seed)
    probs = predict(model, featurize(ex))
    result = {"auc": auc(ex["label"], probs), "logloss": logloss(ex["label"], probs)}
    if ranking:
        result["auc_held_out"] = held_out_auc(ex, probs, held_out)
        users, items = ranking_sets(market, split, seed=data_seed)
        flat = {"user": np.repeat(users, items.shape[1]).astype(np.int32), "item": items.reshape(-1)}
        scores = predict(model, featurize(flat)).reshape(items.shape)
        ranks = full_ranks(model, market, split, featurize)
        result.update({"hr@10": hit_rate_at_k(scores, 10), "ndcg@10": ndcg_at_k(scores, 10),
                       "hr@10_full": hits_from_ranks(ranks, 10), "ndcg@10_full": ndcg_from_ranks(ranks, 10),
                       "recall@20_full": hits_from_ranks(ranks, 20)})
    return result


def held_out_auc(examples: Mapping[str, np.ndarray], probs: np.ndarray, held_out: np.ndarray | None) -> float:
    """AUC of the positives on `held_out` items against all negatives: how well the model ranks those
    items' real interactions above random non-interactions."""
    if held_out is None:
        return float("nan")
    positive = examples["label"] == 1
    keep = ~positive | (positive & np.asarray(held_out, bool)[examples["item"]])
    if not np.any(keep & positive) or np.all(positive[keep]):
        return float("nan")
    return auc(examples["label"][keep], probs[keep])


def full_ranks(model, market: Market, split: str, featurize: Featurize = dict) -> np.ndarray:
    """0-based rank of each held-out item of `split` among every item its user never interacted with.

    The user's other positives (any split) are left out of the ranking; ties count against the held-out
    item, as in `metrics.positive_ranks`. Users are scored against all items in chunks of about
    `_FULL_CHUNK` scores, one model call each.
    """
    frame = market.split(split)
    users, held = frame["user"].to_numpy(np.int64), frame["item"].to_numpy(np.int64)
    n_items = market.num_items
    per_chunk = max(1, _FULL_CHUNK // n_items)
    key_users, key_items = market.interacted // n_items, market.interacted % n_items
    ranks = np.zeros(len(users), np.int64)
    for start in range(0, len(users), per_chunk):
        chunk = users[start:start + per_chunk]
        flat = {"user": np.repeat(chunk, n_items).astype(np.int32),
                "item": np.tile(np.arange(n_items, dtype=np.int32), len(chunk))}
        scores = predict(model, featurize(flat), batch_size=_FULL_CHUNK).reshape(len(chunk), n_items)
        rows = np.arange(len(chunk))
        positive = scores[rows, held[start:start + per_chunk]]
        row_of = np.full(market.num_users, -1, np.int64)
        row_of[chunk] = rows
        touched = row_of[key_users] >= 0
        scores[row_of[key_users[touched]], key_items[touched]] = -np.inf  # positives, the held-out one too
        ranks[start:start + per_chunk] = np.sum(scores >= positive[:, None], axis=1)
    return ranks
