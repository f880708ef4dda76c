"""Negative sampling for CTR training and for ranking evaluation.

Training negatives exclude only the user's TRAIN positives: refusing the held-out valid/test items too
would tell the model, by their absence, which items are held out (a leak from evaluation into
training). Valid/test candidates exclude every item the user interacted with, in any split, so an
evaluation negative is never in fact a positive. Randomness comes from `seeding.derive_rng` on
(seed, market, split, epoch); for valid/test the seed is the DATA seed, so every training seed is
scored on the same candidates.
"""

from __future__ import annotations

import numpy as np

from tff_fedmm.data.splits import Market
from tff_fedmm.errors import DataError, UsageError
from tff_fedmm.seeding import derive_rng

_REJECTION_ROUNDS = 32  # after this, the few users left have touched most items: sample them exactly


def ctr_examples(
    market: Market, split: str, *, neg_ratio: int = 4, seed: int = 0, epoch: int = 0
) -> dict[str, np.ndarray]:
    """Every positive of `split` plus `neg_ratio` uniform negatives per positive.

    Train negatives are redrawn each epoch so the model sees fresh negatives and may be any item
    outside the user's train positives (held-out items included); `seed` is then the training seed.
    Valid/test ignore `epoch` so evaluation is comparable across rounds, avoid all of the user's
    positives, and take the data seed as `seed`. A user with no item left to draw contributes
    positives only.
    """
    if neg_ratio < 0:
        raise UsageError(f"neg_ratio must be 0 or more, got {neg_ratio}")
    frame = market.split(split)
    users = frame["user"].to_numpy(np.int32)
    items = frame["item"].to_numpy(np.int32)
    rng = derive_rng("ctr", seed, market.name, split, epoch if split == "train" else 0)
    neg_users = np.repeat(users, neg_ratio)
    neg_items = _sample_negatives(market, _excluded(market, split), neg_users, rng)
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
    `num_negatives` alternatives; they are fixed by `seed` (the DATA seed) so every model and every
    training seed is ranked on the same sets.
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


def _excluded(market: Market, split: str) -> np.ndarray:
    """The sorted user-item keys a negative of `split` must avoid (see the module docstring)."""
    return market.train_interacted if split == "train" else market.interacted


def _available_counts(market: Market, excluded: np.ndarray | None = None) -> np.ndarray:
    """How many items each user may draw as negatives (default: never interacted with)."""
    excluded = market.interacted if excluded is None else excluded
    touched = np.bincount(excluded // market.num_items, minlength=market.num_users)
    return market.num_items - touched


def _is_excluded(excluded: np.ndarray, num_items: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    keys = users.astype(np.int64) * num_items + items
    if not len(excluded):
        return np.zeros(keys.shape, bool)
    pos = np.minimum(np.searchsorted(excluded, keys), len(excluded) - 1)
    return excluded[pos] == keys


def _complement(excluded: np.ndarray, num_items: int, user: int) -> np.ndarray:
    lo, hi = np.searchsorted(excluded, [user * num_items, (user + 1) * num_items])
    return np.setdiff1d(np.arange(num_items), excluded[lo:hi] - user * num_items)


def _sample_negatives(market: Market, excluded: np.ndarray, users: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """One uniform item outside `excluded` per entry of `users`, or -1 where the user has none."""
    items = np.full(len(users), -1, np.int64)
    todo = np.flatnonzero(_available_counts(market, excluded)[users] > 0)
    for _ in range(_REJECTION_ROUNDS):
        if not todo.size:
            break
        draw = rng.integers(0, market.num_items, size=todo.size)
        good = ~_is_excluded(excluded, market.num_items, users[todo], draw)
        items[todo[good]] = draw[good]
        todo = todo[~good]
    for user in np.unique(users[todo]):
        slots = todo[users[todo] == user]
        items[slots] = rng.choice(_complement(excluded, market.num_items, int(user)), size=len(slots))
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
        block_bad = _is_excluded(market.interacted, market.num_items, users[rows][:, None], block) | _repeats(block)
        out[rows], bad[rows] = block, block_bad
        rows = rows[block_bad.any(axis=1)]
    for row in rows:
        out[row] = rng.choice(_complement(market.interacted, market.num_items, int(users[row])), size=k, replace=False)
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
