"""numpy features → batched tf.data for Keras and TFF.

This is the only data module that imports TensorFlow, so loading and summarising data stays fast.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import numpy as np
import tensorflow as tf


def to_dataset(
    features: Mapping[str, np.ndarray],
    *,
    label_key: str = "label",
    batch_size: int = 256,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """Elements are `OrderedDict(x=OrderedDict(...), y=label)` because TFF's Keras wrapper expects that structure.

    The shuffle uses a full buffer (a uniform permutation) and does not reshuffle per iteration, so
    the same seed always yields the same batches; callers wanting new orders per epoch pass a new seed.
    """
    x = collections.OrderedDict((key, value) for key, value in features.items() if key != label_key)
    tensors = collections.OrderedDict(x=x, y=features[label_key])
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle_seed is not None:
        size = max(len(features[label_key]), 1)
        dataset = dataset.shuffle(size, seed=shuffle_seed, reshuffle_each_iteration=False)
    return dataset.batch(batch_size)
