"""Negative sampling for CTR training and for ranking evaluation.

Negatives are items the user never interacted with in ANY split, so a held-out positive can never
be shown to the model as a negative. Randomness is derived from (seed, market, split, epoch) with a
stable hash rather than Python's salted `hash`, so the same call gives the same examples in every
process, including TFF workers.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tff_fedmm.data.splits import Market
from tff_fedmm.errors import DataError, UsageError

_REJECTION_ROUNDS = 32  # after this, the few users left have touched most items: sample them exactly


def derive_rng(*parts: object) -> np.random.Generator:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def ctr_examples(
    market: Market, split: str, *, neg_ratio: int = 4, seed: int = 0, epoch: int = 0
) -> dict[str, np.ndarray]:
    """Every positive of `split` plus `neg_ratio` uniform negatives per positive.

    Train negatives are redrawn each epoch so the model sees fresh negatives; valid/test ignore
    `epoch` so evaluation is comparable across rounds. A user who interacted with every item has no
    negatives to offer and simply contributes positives only.
    """
    if neg_ratio < 0:
        raise UsageError(f"neg_ratio must be 0 or more, got {neg_ratio}")
    frame = market.split(split)
    users = frame["user"].to_numpy(np.int32)
    items = frame["item"].to_numpy(np.int32)
    rng = derive_rng("ctr", seed, market.name, split, epoch if split == "train" else 0)
    neg_users = np.repeat(users, neg_ratio)
    neg_items = _sample_negatives(market, neg_users, rng)
    found = neg_items >= 0
    return {
        "user": np.concatenate([users, neg_users[found]]).astype(np.int32),
        "item": np.concatenate([items, neg_items[found]]).astype(np.int32),
        "label": np.concatenate([np.ones(len(users)), np.zeros(int(found.sum()))]).astype(np.float32),
    }


def ranking_sets(
    market: Market, split: str, *, num_negatives: int = 99, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Users [n] and candidate items [n, 1 + num_negatives]; column 0 is the held-out positive.

    The negatives of a row are distinct, so hit-rate and NDCG are computed against exactly
    `num_negatives` alternatives; they are fixed by `seed` so every model is ranked on the same sets.
    """
    if num_negatives < 1:
        raise UsageError(f"num_negatives must be 1 or more, got {num_negatives}")
    frame = market.split(split)
    users = frame["user"].to_numpy(np.int32)
    available = _available_counts(market)[users]
    if len(users) and available.min() < num_negatives:
        worst = int(np.argmin(available))
        raise DataError(
            f"market {market.name!r}: user {market.user_ids[users[worst]]} has only {available[worst]} "
            f"items they never interacted with; expected num_negatives <= {available.min()}"
        )
    rng = derive_rng("ranking", seed, market.name, split)
    negatives = _distinct_negatives(market, users, num_negatives, rng)
    items = np.concatenate([frame["item"].to_numpy(np.int64)[:, None], negatives], axis=1)
    return users, items.astype(np.int32)


def _available_counts(market: Market) -> np.ndarray:
    """How many items each user never interacted with."""
    touched = np.bincount(market.interacted // market.num_items, minlength=market.num_users)
    return market.num_items - touched


def _is_interacted(market: Market, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    keys = users.astype(np.int64) * market.num_items + items
    pos = np.searchsorted(market.interacted, keys)
    pos = np.minimum(pos, len(market.interacted) - 1)
    return market.interacted[pos] == keys


def _complement(market: Market, user: int) -> np.ndarray:
    lo, hi = np.searchsorted(market.interacted, [user * market.num_items, (user + 1) * market.num_items])
    return np.setdiff1d(np.arange(market.num_items), market.interacted[lo:hi] - user * market.num_items)


def _sample_negatives(market: Market, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniform non-interacted item per entry of `users`, or -1 where the user has none."""
    items = np.full(len(users), -1, np.int64)
    todo = np.flatnonzero(_available_counts(market)[users] > 0)
    for _ in range(_REJECTION_ROUNDS):
        if not todo.size:
            break
        draw = rng.integers(0, market.num_items, size=todo.size)
        good = ~_is_interacted(market, users[todo], draw)
        items[todo[good]] = draw[good]
        todo = todo[~good]
    for user in np.unique(users[todo]):
        slots = todo[users[todo] == user]
        items[slots] = rng.choice(_complement(market, int(user)), size=len(slots))
    return items


def _distinct_negatives(market: Market, users: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct non-interacted items per user: redraw clashes until none remain.

    Redrawing whatever is invalid treats all allowed items symmetrically, so each row ends up a
    uniformly random k-subset, the same as sampling without replacement.
    """
    out = np.zeros((len(users), k), np.int64)
    bad = np.ones_like(out, dtype=bool)
    rows = np.arange(len(users))
    for _ in range(_REJECTION_ROUNDS):
        if not rows.size:
            break
        block, block_bad = out[rows], bad[rows]
        block[block_bad] = rng.integers(0, market.num_items, size=int(block_bad.sum()))
        block_bad = _is_interacted(market, users[rows][:, None], block) | _repeats(block)
        out[rows], bad[rows] = block, block_bad
        rows = rows[block_bad.any(axis=1)]
    for row in rows:
        out[row] = rng.choice(_complement(market, int(users[row])), size=k, replace=False)
    return out


def _repeats(block: np.ndarray) -> np.ndarray:
    """Marks every occurrence of a value in its row after the first (in column order)."""
    order = np.argsort(block, axis=1, kind="stable")
    ranked = np.take_along_axis(block, order, axis=1)
    clash = np.zeros_like(block, dtype=bool)
    clash[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    repeats = np.zeros_like(clash)
    np.put_along_axis(repeats, order, clash, axis=1)
    return repeats
