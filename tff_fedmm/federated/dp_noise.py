"""TFF's Gaussian DP mechanisms with noise drawn from a seed the server state carries.

`tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed/_adaptive` build tensorflow_privacy queries
whose `GaussianSumQuery` draws noise from an unseeded `tf.random_normal_initializer`: two runs of one
command differ, and a run resumed from its checkpoint cannot match an uninterrupted one (both promised
by `fedmm`). These subclasses change only where the noise comes from: `tf.random.stateless_normal`
keyed by a seed in the query's global state, advanced every round. The seed is therefore part of the
aggregator state inside the server state, checkpointed with it. Clipping, noise scale, normalisation
and the `DpEvent` each round reports are those of the parent classes, and the factories below mirror
TFF's `gaussian_fixed` / `gaussian_adaptive` parameter for parameter (including the adaptive split of
the noise budget, `adaptive_clip_noise_params`).

The seed is public server randomness, like TFF's own `noise_seed` of `tree_aggregation`; a deployment
would draw it from a secure source.
"""

from __future__ import annotations

import collections

import dp_accounting
import tensorflow as tf
import tensorflow_federated as tff
import tensorflow_privacy as tfp


class SeededGaussianSumQuery(tfp.GaussianSumQuery):
    """Clip each record to `l2_norm_clip`, add N(0, stddev²) noise to the sum, seeded by the state."""

    _GlobalState = collections.namedtuple("_GlobalState", ["l2_norm_clip", "stddev", "seed"])

    def __init__(self, l2_norm_clip: float, stddev: float, seed: int):
        super().__init__(l2_norm_clip, stddev)
        self._seed = seed

    def make_global_state(self, l2_norm_clip, stddev, seed=None):
        seed = tf.constant([self._seed, 0], tf.int64) if seed is None else seed
        return self._GlobalState(tf.cast(l2_norm_clip, tf.float32), tf.cast(stddev, tf.float32), seed)

    def get_noised_result(self, sample_state, global_state):
        leaves = tf.nest.flatten(sample_state)
        noised = [v + tf.cast(tf.random.stateless_normal(tf.shape(v), seed=tf.random.experimental.stateless_fold_in(
            global_state.seed, i), stddev=global_state.stddev), v.dtype) for i, v in enumerate(leaves)]
        next_state = global_state._replace(seed=global_state.seed + tf.constant([0, 1], tf.int64))
        event = dp_accounting.GaussianDpEvent(global_state.stddev / global_state.l2_norm_clip)
        return tf.nest.pack_sequence_as(sample_state, noised), next_state, event


class _SeededQuantileEstimatorQuery(tfp.QuantileEstimatorQuery):
    """The adaptive clip's private estimate of the unclipped fraction, with seeded count noise."""

    def __init__(self, *args, seed: int, **kwargs):
        self._seed = seed  # read by _construct_below_estimate_query during super().__init__
        super().__init__(*args, **kwargs)

    def _construct_below_estimate_query(self, below_estimate_stddev, expected_num_records):
        return tfp.NormalizedQuery(SeededGaussianSumQuery(0.5, below_estimate_stddev, self._seed),
                                   denominator=expected_num_records)


class _SeededAdaptiveClipSumQuery(tfp.QuantileAdaptiveClipSumQuery):
    def __init__(self, initial_l2_norm_clip, noise_multiplier, target_unclipped_quantile, learning_rate,
                 clipped_count_stddev, expected_num_records, seed: int):
        super().__init__(initial_l2_norm_clip, noise_multiplier, target_unclipped_quantile, learning_rate,
                         clipped_count_stddev, expected_num_records, geometric_update=True)
        self._sum_query = SeededGaussianSumQuery(initial_l2_norm_clip, noise_multiplier * initial_l2_norm_clip,
                                                 seed)
        self._quantile_estimator_query = _SeededQuantileEstimatorQuery(
            initial_l2_norm_clip, target_unclipped_quantile, learning_rate, clipped_count_stddev,
            expected_num_records, geometric_update=True, seed=seed + 1)

    def get_noised_result(self, sample_state, global_state):
        # The parent rebuilds the sum state for the new clip; carry the advanced noise seed over.
        result, new_state, event = super().get_noised_result(sample_state, global_state)
        seed = global_state.sum_state.seed + tf.constant([0, 1], tf.int64)
        return result, new_state._replace(sum_state=new_state.sum_state._replace(seed=seed)), event


RecordSum = tff.aggregators.UnweightedAggregationFactory | None


def gaussian_fixed(noise_multiplier: float, clients_per_round: float, clip: float, seed: int,
                   record_sum: RecordSum = None) -> tff.aggregators.DifferentiallyPrivateFactory:
    """As `DifferentiallyPrivateFactory.gaussian_fixed`, with seeded noise; `record_sum` sums the
    clipped records (e.g. a `SecureSumFactory`; TFF's `SumFactory` when None)."""
    query = SeededGaussianSumQuery(clip, clip * noise_multiplier, seed)
    return tff.aggregators.DifferentiallyPrivateFactory(
        tfp.NormalizedQuery(query, denominator=float(clients_per_round)), record_sum)


def gaussian_adaptive(noise_multiplier: float, clients_per_round: float, seed: int, record_sum: RecordSum = None,
                      initial_l2_norm_clip: float = 0.1, target_unclipped_quantile: float = 0.5,
                      learning_rate: float = 0.2) -> tff.aggregators.DifferentiallyPrivateFactory:
    """As `DifferentiallyPrivateFactory.gaussian_adaptive` (its defaults), with seeded noise."""
    from tensorflow_federated.python.aggregators.differential_privacy import adaptive_clip_noise_params

    value_noise, count_stddev = adaptive_clip_noise_params(noise_multiplier, float(clients_per_round))
    query = _SeededAdaptiveClipSumQuery(initial_l2_norm_clip, value_noise, target_unclipped_quantile,
                                        learning_rate, count_stddev, float(clients_per_round), seed)
    return tff.aggregators.DifferentiallyPrivateFactory(
        tfp.NormalizedQuery(query, denominator=float(clients_per_round)), record_sum)
