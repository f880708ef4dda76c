"""The custom aggregator of FedMM: it aggregates the global codebook and nothing else.

Two rules, producing `<estimate=f32[K,d], code_counts=f32[K]>@SERVER` for one finalizer: the mean
update (`fedavg`) or the new codes (`kmeans`); codes whose count is zero keep their previous value.

- `fedavg`: FedAvg of the codebook. Each market trains the global codebook with its RQ-VAE (Adam,
  `local_epochs` per round) and sends its update `<codebook_update>` (trained minus received global
  codebook), weighted by its number of examples; the server adds the weighted mean update to its codebook
  (`tff.aggregators.MeanFactory` by default), which is the example-weighted mean of the trained codebooks.
  An update rather than the codebook itself, so that DP can clip it (`tff_fedmm.federated.privacy`):
  clipping a codebook would shrink it, clipping an update only slows it. A DP mean is unweighted (its
  sensitivity must not depend on a market's size), so with DP the markets count equally.
- `kmeans`: each market sends `<code_sums, code_counts>`, the per-code sums of the latents assigned to
  each global code and how many there were; the server sums them (`tff.aggregators.SumFactory` by
  default) and sets each code to the count-weighted mean. This is the federated mini-batch k-means step
  of `tff.learning.algorithms.build_fed_kmeans` (its client statistics and sum aggregation), without its
  cumulative weights: the encoders move between rounds, so old assignments should not pin the codes.

The inner factories are parameters so that DP or secure summation can wrap exactly these values.

Anchored mode (`anchors` > 0 slots, `tff_fedmm.data.anchors`) adds two fields to either payload:
`anchor_means` (f32[A, d], per anchor slot the mean level-1 latent of the market's items in that slot,
zero where it has none) and `anchor_counts` (f32[A], 1 where it has one). They go through the same inner
factory as the codebook payload, so DP and secure summation wrap them too; the ratio of their
aggregates is the consensus latent per anchor: the (example-weighted, under the weighted `fedavg` rule)
mean over the markets carrying it. Means, not sums, so one market's contribution per slot is bounded
by the unit scale of the latents whatever its size.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.common_libs import structure

RULES = ("fedavg", "kmeans")  # = pipelines.compare_names.CODEBOOK_RULES (a test checks)


def client_payload_type(rule: str, k: int, d: int, anchors: int = 0) -> tff.StructType:
    """What one market sends under `rule` (and `anchors` slots): the only CLIENTS→SERVER value of the
    codebook stage."""
    codebook = tff.TensorType(np.float32, [k, d])
    if rule == "fedavg":
        fields = [("codebook_update", codebook)]
    elif rule == "kmeans":
        fields = [("code_sums", codebook), ("code_counts", tff.TensorType(np.float32, [k]))]
    else:
        raise ValueError(f"unknown codebook rule {rule!r}; expected one of {RULES}")
    if anchors:
        fields += [("anchor_means", tff.TensorType(np.float32, [anchors, d])),
                   ("anchor_counts", tff.TensorType(np.float32, [anchors]))]
    return tff.StructWithPythonType(fields, collections.OrderedDict)


def _with_anchor_consensus(result: collections.OrderedDict, aggregate, anchored: bool) -> collections.OrderedDict:
    """Adds the per-anchor consensus (ratio of the aggregated means and counts) when anchors are sent."""
    if anchored:
        result["anchor_consensus"] = tf.math.divide_no_nan(aggregate["anchor_means"],
                                                           aggregate["anchor_counts"][:, tf.newaxis])
        result["anchor_counts"] = aggregate["anchor_counts"]
    return result


class GlobalCodebookFactory(tff.aggregators.WeightedAggregationFactory):
    """A `tff.aggregators` factory for the global codebook under the `fedavg` or `kmeans` rule."""

    def __init__(
        self,
        rule: str = "fedavg",
        mean_factory: tff.aggregators.WeightedAggregationFactory
        | tff.aggregators.UnweightedAggregationFactory | None = None,
        sum_factory: tff.aggregators.UnweightedAggregationFactory | None = None,
    ):
        if rule not in RULES:
            raise ValueError(f"unknown codebook rule {rule!r}; expected one of {RULES}")
        self.rule = rule
        self._mean_factory = mean_factory or tff.aggregators.MeanFactory()
        self._sum_factory = sum_factory or tff.aggregators.SumFactory()

    def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
        k, d = value_type[0].shape
        anchored = "anchor_means" in structure.name_list(value_type)
        weighted = isinstance(self._mean_factory, tff.aggregators.WeightedAggregationFactory)
        if self.rule == "fedavg":
            inner = (self._mean_factory.create(value_type, weight_type) if weighted
                     else self._mean_factory.create(value_type))

            @tff.tensorflow.computation(value_type)
            def to_result(mean):
                return _with_anchor_consensus(
                    collections.OrderedDict(estimate=mean["codebook_update"], code_counts=tf.ones([k])), mean, anchored)

        else:
            inner = self._sum_factory.create(value_type)

            @tff.tensorflow.computation(value_type)
            def to_result(sums):
                means = tf.math.divide_no_nan(sums["code_sums"], sums["code_counts"][:, tf.newaxis])
                return _with_anchor_consensus(
                    collections.OrderedDict(estimate=means, code_counts=sums["code_counts"]), sums, anchored)

        @tff.federated_computation(
            inner.initialize.type_signature.result,
            tff.FederatedType(value_type, tff.CLIENTS),
            tff.FederatedType(weight_type, tff.CLIENTS),
        )
        def next_fn(state, value, weight):
            if self.rule == "fedavg" and weighted:
                output = inner.next(state, value, weight)
            else:
                output = inner.next(state, value)
            return tff.templates.MeasuredProcessOutput(
                state=output.state,
                result=tff.federated_map(to_result, output.result),
                measurements=output.measurements,
            )

        return tff.templates.AggregationProcess(inner.initialize, next_fn)


def shared_state_type(k: int, d: int, anchors: int = 0) -> tff.Type:
    """What the server holds and broadcasts: the global codebook, and in anchored mode also the
    consensus latent per anchor slot and whether any market has sent that slot yet (`anchor_known`)."""
    codebook_type = tff.TensorType(np.float32, [k, d])
    if not anchors:
        return codebook_type
    return tff.StructWithPythonType([("codebook", codebook_type),
                                     ("anchor_consensus", tff.TensorType(np.float32, [anchors, d])),
                                     ("anchor_known", tff.TensorType(np.float32, [anchors]))], collections.OrderedDict)


def build_codebook_finalizer(k: int, d: int, rule: str = "fedavg",
                             anchors: int = 0) -> tff.learning.templates.FinalizerProcess:
    """Writes the aggregate into the global codebook: under `fedavg` it adds the mean update, under
    `kmeans` it replaces every used code by its mean latent; a code no market used keeps its value.
    With `anchors`, a slot some market sent this round takes the new consensus; the others keep theirs."""
    codebook_type = tff.TensorType(np.float32, [k, d])
    state_type = shared_state_type(k, d, anchors)
    fields = [("estimate", codebook_type), ("code_counts", tff.TensorType(np.float32, [k]))]
    if anchors:
        fields += [("anchor_consensus", tff.TensorType(np.float32, [anchors, d])),
                   ("anchor_counts", tff.TensorType(np.float32, [anchors]))]
    result_type = tff.StructType(fields)

    @tff.tensorflow.computation(state_type, result_type)
    def merge(current, aggregated):
        old = current["codebook"] if anchors else current
        used = aggregated.code_counts > 0
        new = old + aggregated.estimate if rule == "fedavg" else aggregated.estimate
        codebook = tf.where(used[:, tf.newaxis], new, old)
        measurements = collections.OrderedDict(global_codes_updated=tf.reduce_mean(tf.cast(used, tf.float32)))
        if not anchors:
            return codebook, measurements
        sent = aggregated.anchor_counts > 0
        measurements["anchor_slots_sent"] = tf.reduce_mean(tf.cast(sent, tf.float32))
        return collections.OrderedDict(
            codebook=codebook,
            anchor_consensus=tf.where(sent[:, tf.newaxis], aggregated.anchor_consensus, current["anchor_consensus"]),
            anchor_known=tf.maximum(current["anchor_known"], tf.cast(sent, tf.float32))), measurements

    @tff.federated_computation
    def init_fn():
        return tff.federated_value((), tff.SERVER)

    @tff.federated_computation(
        init_fn.type_signature.result,
        tff.FederatedType(state_type, tff.SERVER),
        tff.FederatedType(result_type, tff.SERVER),
    )
    def next_fn(state, current, aggregated):
        codebook, measurements = tff.federated_map(merge, (current, aggregated))
        return tff.templates.MeasuredProcessOutput(state=state, result=codebook, measurements=measurements)

    return tff.learning.templates.FinalizerProcess(init_fn, next_fn)
