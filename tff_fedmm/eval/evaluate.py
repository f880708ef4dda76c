"""Scores one market's model on a split: AUC/LogLoss on CTR examples, HR@10/nDCG@10 on 1+99 sets."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from tff_fedmm.data.sampling import ctr_examples, ranking_sets
from tff_fedmm.data.splits import Market
from tff_fedmm.eval.metrics import auc, hit_rate_at_k, logloss, ndcg_at_k

Featurize = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
METRICS = ("auc", "logloss", "hr@10", "ndcg@10")


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


def evaluate_market(model, market: Market, split: str, featurize: Featurize = dict, seed: int = 0,
                    ranking: bool = True) -> dict[str, float]:
    """`featurize` adds whatever the model reads beyond (user, item), e.g. code fields or hashed IDs."""
    ex = ctr_examples(market, split, seed=seed)
    probs = predict(model, featurize(ex))
    result = {"auc": auc(ex["label"], probs), "logloss": logloss(ex["label"], probs)}
    if ranking:
        users, items = ranking_sets(market, split, seed=seed)
        flat = {"user": np.repeat(users, items.shape[1]).astype(np.int32), "item": items.reshape(-1)}
        scores = predict(model, featurize(flat)).reshape(items.shape)
        result.update({"hr@10": hit_rate_at_k(scores, 10), "ndcg@10": ndcg_at_k(scores, 10)})
    return result
