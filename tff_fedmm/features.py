"""What a market's CTR model reads beyond the market's own user and item indices.

One object describes it for training, evaluation and scoring alike: the code fields added from the
market's codes (`codes.with_codes`) and the ID offsets of a pooled model (`centralized`, whose ID tables
stack every market's rows). The run's evaluation and an exported model's `score` go through the same
`MarketFeatures`, so a reloaded model is fed exactly what it was trained and evaluated on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tff_fedmm.codes import MarketCodes, with_codes


@dataclass(frozen=True)
class MarketFeatures:
    """A featurizer: examples with `user` and `item` indices in, the model's input dict out."""

    codes: MarketCodes | None = None
    use_global: bool = True
    use_local: bool = True
    # Added to the market's own indices after the code lookup (which reads them); None: no offset.
    user_offset: int | None = None
    item_offset: int | None = None

    def __call__(self, examples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = with_codes(examples, self.codes, use_global=self.use_global, use_local=self.use_local)
        if self.user_offset is not None:
            out["user"] = (out["user"] + self.user_offset).astype(np.int32)
        if self.item_offset is not None:
            out["item"] = (out["item"] + self.item_offset).astype(np.int32)
        return out
