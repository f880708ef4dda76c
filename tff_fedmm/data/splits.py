"""Per-market vocabularies and the temporal leave-one-out split.

Each market builds its own user and item vocabularies: no index means the same thing in two
markets, so nothing a model learns can rely on raw item IDs recurring across markets. The raw item
IDs are kept only as an evaluation-side table for measuring cross-market alignment after training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tff_fedmm.data.loading import MIN_USER_INTERACTIONS, RawMarket

_SPLIT_COLUMNS = ["user", "item", "rate", "date"]


@dataclass(frozen=True, eq=False)
class Market:
    """One market ready for training: integer ids, three splits and the set of all interactions.

    `item_ids` maps item index to raw item ID. It is EVALUATION-ONLY: cross-market identity of
    raw IDs must never reach a model, it only measures alignment after training.
    `interacted` holds sorted keys `user * num_items + item` over all splits (what evaluation
    candidates avoid), `train_interacted` those of the train split only (what training negatives
    avoid: the held-out items must stay drawable, see `data.sampling`); one searchsorted each.
    `file_rows` counts data rows before duplicates and repeated user-item pairs were removed, so a
    summary can be reconciled with `wc -l` on the source file.
    """

    name: str
    num_users: int
    num_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    interacted: np.ndarray
    train_interacted: np.ndarray
    file_rows: int

    @property
    def num_interactions(self) -> int:
        return len(self.train) + len(self.valid) + len(self.test)

    def split(self, name: str) -> pd.DataFrame:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}; expected train, valid or test")
        return getattr(self, name)


def prepare_market(raw: RawMarket) -> Market:
    """Index a raw market and split each user's history by time.

    A user who interacted with the same item on several dates keeps only the earliest: otherwise a
    repeat of the test item would sit in train and leak the answer, and `interacted` keys must be
    unique per user-item pair anyway.
    """
    frame = raw.frame.reset_index(drop=True)
    user_ids, users = np.unique(frame["userId"].to_numpy(dtype=str), return_inverse=True)
    item_ids, items = np.unique(frame["itemId"].to_numpy(dtype=str), return_inverse=True)
    indexed = pd.DataFrame(
        {
            "user": users.astype(np.int32),
            "item": items.astype(np.int32),
            "rate": frame["rate"].to_numpy(dtype=np.float32),
            "date": frame["date"].to_numpy(dtype="datetime64[ns]"),
        }
    )
    # lexsort is stable: among equal (user, date) file order survives, so ties resolve by position.
    order = np.lexsort((indexed["date"].to_numpy(np.int64), indexed["user"].to_numpy()))
    ordered = indexed.iloc[order].drop_duplicates(["user", "item"], keep="first").reset_index(drop=True)
    train, valid, test = _leave_last_two_out(ordered)
    num_items = len(item_ids)
    keys = np.unique(ordered["user"].to_numpy(np.int64) * num_items + ordered["item"].to_numpy(np.int64))
    train_keys = np.unique(train["user"].to_numpy(np.int64) * num_items + train["item"].to_numpy(np.int64))
    return Market(
        name=raw.name,
        num_users=len(user_ids),
        num_items=num_items,
        user_ids=user_ids,
        item_ids=item_ids,
        train=train,
        valid=valid,
        test=test,
        interacted=keys,
        train_interacted=train_keys,
        file_rows=len(frame) + raw.duplicates_dropped,
    )


def _leave_last_two_out(ordered: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Last interaction → test, second last → valid; short histories stay whole in train."""
    sizes = ordered.groupby("user", sort=False)["user"].transform("size").to_numpy()
    from_end = sizes - 1 - ordered.groupby("user", sort=False).cumcount().to_numpy()
    splittable = sizes >= MIN_USER_INTERACTIONS
    is_test = splittable & (from_end == 0)
    is_valid = splittable & (from_end == 1)
    is_train = ~(is_test | is_valid)
    return tuple(ordered.loc[mask, _SPLIT_COLUMNS].reset_index(drop=True) for mask in (is_train, is_valid, is_test))
