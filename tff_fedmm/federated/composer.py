"""Composes a learning process whose clients keep private state across rounds.

`tff.learning.templates.compose_learning_process` builds `(state@SERVER, data@CLIENTS) -> state@SERVER`
and so cannot carry per-market state. This composer keeps its shape — a distributor, a client update,
an aggregation process and a finalizer, the server state a `LearningAlgorithmState` — but its `next`
takes and returns the markets' private state CLIENTS-placed:

    next(<state@SERVER, {client_state}@CLIENTS, {data}@CLIENTS>)
        -> <state@SERVER, {client_state}@CLIENTS, metrics@SERVER>

Only two values ever move CLIENTS→SERVER: the aggregator's input (the shared update) and the summed
scalar metrics — or, with `metrics_cross=False` (under DP, where nothing may cross outside the
mechanism), the update alone: the metrics then stay in the markets and `next` returns none of the
client work's. `tff_fedmm.federated.audit` checks that claim on the compiled computation.
"""

from __future__ import annotations

import collections

import tensorflow as tf
import tensorflow_federated as tff


def compose_stateful_process(
    initial_shared_fn: tff.Computation,
    initial_client_state_type: tff.Type,
    data_type: tff.Type,
    distributor: tff.templates.MeasuredProcess,
    client_update: tff.Computation,
    aggregator: tff.templates.AggregationProcess,
    finalizer: tff.learning.templates.FinalizerProcess,
    finalize_metrics: tff.Computation,
    metrics_cross: bool = True,
) -> tff.templates.IterativeProcess:
    """`client_update(shared, client_state, data) -> (client_state, update, weight, metrics)`.

    `metrics` must be a structure of float32 scalars: with `metrics_cross` they are summed across markets
    and turned into round metrics on the server by `finalize_metrics` (so a market's raw statistics never
    need to; `build_finalize_metrics` builds it); without, they never leave the markets and the round metrics
    have no `client_work`.
    """

    @tff.federated_computation
    def initialize():
        return tff.federated_zip(
            tff.learning.templates.LearningAlgorithmState(
                global_model_weights=tff.federated_eval(initial_shared_fn, tff.SERVER),
                distributor=distributor.initialize(),
                client_work=tff.federated_value((), tff.SERVER),
                aggregator=aggregator.initialize(),
                finalizer=finalizer.initialize(),
            )
        )

    server_state_type = initialize.type_signature.result
    client_states_type = tff.FederatedType(initial_client_state_type, tff.CLIENTS)
    data_federated_type = tff.FederatedType(data_type, tff.CLIENTS)

    @tff.federated_computation(server_state_type, client_states_type, data_federated_type)
    def next_fn(state, client_states, data):
        distributed = distributor.next(state.distributor, state.global_model_weights)
        client_states, update, weight, client_metrics = tff.federated_map(
            client_update, (distributed.result, client_states, data)
        )
        aggregated = aggregator.next(state.aggregator, update, weight)
        finalized = finalizer.next(state.finalizer, state.global_model_weights, aggregated.result)
        new_state = tff.federated_zip(
            tff.learning.templates.LearningAlgorithmState(
                global_model_weights=finalized.result,
                distributor=distributed.state,
                client_work=state.client_work,
                aggregator=aggregated.state,
                finalizer=finalized.state,
            )
        )
        metrics = collections.OrderedDict(aggregator=aggregated.measurements, finalizer=finalized.measurements)
        if metrics_cross:
            metrics["client_work"] = tff.federated_map(finalize_metrics, tff.federated_sum(client_metrics))
            metrics.move_to_end("client_work", last=False)
        metrics = tff.federated_zip(metrics)
        return new_state, client_states, metrics

    return tff.templates.IterativeProcess(initialize, next_fn)


def build_finalize_metrics(metrics_type: tff.Type, per_market: tuple[str, ...] = ()) -> tff.Computation:
    """The server's round metrics from the markets' summed client metrics (`compose_stateful_process`).

    A client reports every metric as a sum over its examples, plus `num_examples` and, when some metric is
    a per-market figure (named in `per_market`), `markets` (1.0 per client): summing across markets then
    gives the example-weighted mean (or the mean over markets) with one division on the server, and no
    market's own figure is ever needed there. `num_examples` is kept as it is; `markets` is dropped.
    """

    @tff.tensorflow.computation(metrics_type)
    def finalize(sums):
        means = collections.OrderedDict()
        for name, total in sums.items():
            if name == "num_examples":
                means[name] = total
            elif name != "markets":
                means[name] = tf.math.divide_no_nan(total, sums["markets" if name in per_market else "num_examples"])
        return means

    return finalize
