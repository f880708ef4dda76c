"""A market as if it had observed only part of its training interactions (the scarce-market study).

Transfer across markets should matter most where a market has little data. `thin_training` keeps a
seeded share of one market's TRAIN interactions and drops the rest as if never observed: valid and
test are untouched, and so is every evaluation candidate set (`interacted`, which candidates avoid, still
holds every positive), so the fractions of one study are scored on identical sets and can be paired.
Users left with no training interaction stay in the vocabulary as cold users. The kept rows are nested:
every row kept at fraction f is kept at any larger fraction, so a curve over fractions varies one thing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tff_fedmm.data.splits import Market
from tff_fedmm.errors import UsageError
from tff_fedmm.seeding import derive_rng


def thin_training(market: Market, fraction: float, data_seed: int = 0) -> Market:
    """`market` with a `fraction` (0 < f <= 1) of its train rows, chosen from `data_seed` alone."""
    if not 0 < fraction <= 1:
        raise UsageError(f"--fractions: expected shares in (0, 1], got {fraction}")
    priority = derive_rng(data_seed, "scarce", market.name).permutation(len(market.train))
    keep = np.sort(np.flatnonzero(priority < round(fraction * len(market.train))))
    train = market.train.iloc[keep].reset_index(drop=True)
    keys = np.unique(train["user"].to_numpy(np.int64) * market.num_items + train["item"].to_numpy(np.int64))
    return replace(market, train=train, train_interacted=keys)
