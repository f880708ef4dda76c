"""The one source of randomness: every seed and generator is derived from named parts.

A stage derives what it needs from (seed, stage, market, round, ...) with a stable hash (blake2b, not
Python's salted `hash`), so the same parts give the same numbers in every process, including TFF
workers, and no stage depends on what another left behind. A stage that uses TensorFlow's global
random state (Keras initialisers, dataset shuffles combine with it) calls `set_global_seed` first:
otherwise its result would depend on which stages happened to run before it.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*parts: object) -> int:
    """A 31-bit seed (valid for numpy, TF ops and Keras) that depends only on `parts`."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**31 - 1)


def derive_rng(*parts: object) -> np.random.Generator:
    """A numpy generator that depends only on `parts`."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def set_global_seed(*parts: object) -> int:
    """Seeds Python's, numpy's and TensorFlow's global generators from `parts`; returns the seed."""
    import tensorflow as tf

    seed = derive_seed(*parts)
    tf.keras.utils.set_random_seed(seed)
    return seed
