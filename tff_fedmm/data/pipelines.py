"""numpy features → batched tf.data for Keras and TFF.

This is the only data module that imports TensorFlow, so loading and summarising data stays fast.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from tff_fedmm.data.dp_records import interaction_records, poisson_batches


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


def record_dataset(records: Mapping[str, np.ndarray], batches: list[np.ndarray], noise_seeds: np.ndarray,
                   *, label_key: str = "label") -> tf.data.Dataset:
    """DP-SGD's batches (`data.dp_records`): element i is `OrderedDict(records=OrderedDict(x=..., y=...),
    noise_seed=int64[2])` holding the records of `batches[i]`, each field [sampled records, 1 + negatives].
    Poisson batches differ in size, so the fields are sliced from ragged tensors and made dense again:
    their first dimension is unknown, and one dataset type serves every round."""
    def ragged(values: np.ndarray) -> tf.RaggedTensor:
        return tf.RaggedTensor.from_row_lengths(values[np.concatenate(batches)] if batches else values[:0],
                                                [len(b) for b in batches])

    x = collections.OrderedDict((key, ragged(value)) for key, value in records.items() if key != label_key)
    tensors = collections.OrderedDict(records=collections.OrderedDict(x=x, y=ragged(records[label_key])),
                                      noise_seed=noise_seeds)
    dense = lambda t: t.to_tensor() if isinstance(t, tf.RaggedTensor) else t  # noqa: E731
    return tf.data.Dataset.from_tensor_slices(tensors).map(lambda e: tf.nest.map_structure(dense, e))


def market_record_dataset(market, neg_ratio: int, sampling_rate: float, steps: int, rng: np.random.Generator,
                          featurize=dict) -> tf.data.Dataset:
    """One pass of DP-SGD over `market`: fresh records (`dp_records.interaction_records`), `steps` Poisson
    batches of them, their fields from `featurize` (e.g. the market's codes), all drawn from `rng`."""
    records = interaction_records(market, neg_ratio, rng)
    shape = records["label"].shape
    records = {key: value.reshape(shape) for key, value in featurize({k: v.reshape(-1) for k, v in records.items()}).items()}
    batches, noise_seeds = poisson_batches(records, sampling_rate, steps, rng)
    return record_dataset(records, batches, noise_seeds)
