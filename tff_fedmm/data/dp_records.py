"""Records and Poisson-sampled batches for DP-SGD (`training.dp_sgd`, `--dp-unit interaction`).

The unit of privacy is one train interaction. Its record is the interaction (label 1) plus `neg_ratio`
negatives drawn uniformly from ALL of the market's items (label 0). Unlike `sampling.ctr_examples`, the
negatives do not avoid the user's other positives: avoiding them would make every record of a user depend
on that user's other interactions, so removing one interaction would change other records too, and one
record's clip would no longer bound its influence. The cost is a few false negatives (about a user's
train degree / items of their draws).

Every draw (negatives, which records a step samples) comes from one generator seeded by the stage's DP
noise seed (`privacy.noise_seed`: OS entropy by default), because amplification by sampling holds only
while nobody can tell which records a step used.
"""

from __future__ import annotations

import numpy as np

from tff_fedmm.data.splits import Market


def interaction_records(market: Market, neg_ratio: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`user`, `item`, `label`, each [train interactions, 1 + neg_ratio]: column 0 is the interaction."""
    frame = market.split("train")
    users = frame["user"].to_numpy(np.int32)
    negatives = rng.integers(0, market.num_items, size=(len(users), neg_ratio), dtype=np.int32)
    items = np.concatenate([frame["item"].to_numpy(np.int32)[:, None], negatives], axis=1)
    labels = np.zeros(items.shape, np.float32)
    labels[:, 0] = 1.0
    return {"user": np.repeat(users[:, None], 1 + neg_ratio, axis=1), "item": items, "label": labels}


def poisson_batches(records: dict[str, np.ndarray], sampling_rate: float, steps: int,
                    rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """`steps` batches of record indices, each record in each batch independently with `sampling_rate`,
    and one noise seed (int64 pair) per batch, all from `rng`."""
    count = len(next(iter(records.values())))
    batches = [np.flatnonzero(rng.random(count) < sampling_rate) for _ in range(steps)]
    return batches, rng.integers(0, 2**62, size=(steps, 2), dtype=np.int64)
