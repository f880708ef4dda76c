"""Distributed DP (`--dp-mode distributed`): each market noises its own update before a secure sum.

With central DP (`federated.dp_noise`) the server sums the markets' clipped updates and then adds the
noise, so the server itself sees every clipped update (or, with `--secure-agg`, the exact sum). Here
the noise is added by the markets: TFF's `DistributedDpSumFactory` with the distributed discrete
Gaussian mechanism (DDG, Kairouz, Liu & Steinke 2021, arXiv:2102.06387; Algorithms 1-2) clips each
market's update to L2 norm C, rotates it (randomized DFT), scales and stochastically rounds it to
integers, adds a discrete Gaussian share of standard deviation z·C/sqrt(n) (scaled) drawn on the
market from its own randomness, and sums the shares with TFF's secure sum modulo 2^`BITS`. The server
only ever receives the noised sum, whose noise variance is that of central DP with multiplier z. The
result is divided by the number of markets that sent (securely summed too), as TFF's
`ddp_secure_aggregator` does. In this simulation the secure sum is replaced by its plain body at compile
time (`federated.context`); the clipping, quantization and per-market noise are TFF's real ones.

The markets draw their noise shares with TensorFlow's unseeded samplers, and the rotation and rounding
are seeded by the clock: no seed of the run can regenerate the noise, and a run killed and resumed does
not reproduce the uninterrupted one's numbers (it resumes from its last checkpoint and completes).

ε: TFF records no `DpEvent` for this mechanism (its DP query reports `UnsupportedDpEvent`). We use the
RDP bound of the DDG paper that the authors' accounting (google-research/federated, `distributed_dp`)
applies, Proposition 14: for sensitivities Δ2, Δ1 of the scaled integer sum and n shares of local scale
σ, with l2 = Δ2/(sqrt(n)σ), l1 = Δ1/(sqrt(n)σ) and τ = 10·Σ_{k=1}^{n-1} exp(-2π²σ²·k/(k+1)), every
order α has RDP ≤ (α/2)·min(l2² + 2·l1·τ + τ²·d, (l2 + sqrt(d)·τ)²). That is the RDP of a Gaussian
mechanism with noise multiplier 1/sqrt(min(...)), which `round_event` reports as a `GaussianDpEvent`,
so the accountant composes it like any other round. Δ2 is the clip after the inflation that rounding
may cause (TFF's `scaled_inflated_l2`, read from the state), Δ1 ≤ Δ2·min(sqrt(d), Δ2) as TFF bounds it,
σ the nominal local scale (the sampler rounds it up: more noise, so the bound stays valid). It assumes
n markets add their shares every round: a round with fewer (drop-out) would carry less noise than
accounted, which is why `--dropout-rate` is refused with this mode.
"""

from __future__ import annotations

import collections
import math

import dp_accounting
import numpy as np
import tensorflow_federated as tff
from tensorflow_federated.python.aggregators.distributed_dp import DistributedDpSumFactory

BITS = 20  # field size 2^20 of the secure sum, TFF's default in `ddp_secure_aggregator`
STATE_KEY = "distributed_dp"  # marks the aggregator state of this mode (`is_state`)


class DistributedDpMeanFactory(tff.aggregators.UnweightedAggregationFactory):
    """The distributed-DP mean of one stage's shared update; its state carries what ε is computed from."""

    def __init__(self, noise_multiplier: float, markets_per_round: int, clip: float):
        _allow_deep_computations()
        self._markets = int(markets_per_round)
        self._sum = DistributedDpSumFactory(noise_multiplier=float(noise_multiplier),
                                            expected_clients_per_round=self._markets, bits=BITS,
                                            l2_clip=float(clip), mechanism="distributed_dgauss",
                                            rotation_type="dft")

    def create(self, value_type) -> tff.templates.AggregationProcess:
        mean = tff.aggregators.UnweightedMeanFactory(
            value_sum_factory=self._sum,
            count_sum_factory=tff.aggregators.SecureSumFactory(upper_bound_threshold=1, lower_bound_threshold=0),
        ).create(value_type)
        # The dimension the mechanism works in: every value element, padded to even by the DFT rotation.
        dim = 2 * math.ceil(sum(int(np.prod(t.shape)) for t in _leaves(value_type)) / 2)
        constants = collections.OrderedDict(markets=np.int32(self._markets), dim=np.int32(dim))

        @tff.federated_computation
        def init_fn():
            return tff.federated_zip(collections.OrderedDict(
                [(STATE_KEY, mean.initialize())]
                + [(k, tff.federated_value(v, tff.SERVER)) for k, v in constants.items()]))

        @tff.federated_computation(init_fn.type_signature.result, tff.FederatedType(value_type, tff.CLIENTS))
        def next_fn(state, value):
            output = mean.next(state[STATE_KEY], value)
            new_state = tff.federated_zip(collections.OrderedDict(
                [(STATE_KEY, output.state)] + [(k, state[k]) for k in constants]))
            return tff.templates.MeasuredProcessOutput(state=new_state, result=output.result,
                                                       measurements=output.measurements)

        return tff.templates.AggregationProcess(init_fn, next_fn)


def _allow_deep_computations() -> None:
    """Lets protobuf's upb backend copy computations nested deeper than 100 levels.

    TFF copies every building block into its parent's proto, and upb copies by parsing, with a nesting
    limit of 100 unless oversize protos are allowed ("DecodeError: Error parsing message"). TFF's
    distributed DP (concat, rotation, clipping, discretization, DP, two modular clips and a secure sum,
    nested) inside a stage's process passes that limit when the process is traced. A process-wide
    setting; other protobuf backends have no such limit here.
    """
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() == "upb":
        from google._upb import _message

        _message.SetAllowOversizeProtos(True)


def _leaves(type_spec) -> list[tff.TensorType]:
    if isinstance(type_spec, tff.TensorType):
        return [type_spec]
    return [leaf for _, member in tff.structure.iter_elements(type_spec) for leaf in _leaves(member)]


def is_state(aggregator_state) -> bool:
    """Whether `aggregator_state` is the state of a `DistributedDpMeanFactory` process."""
    return isinstance(aggregator_state, collections.abc.Mapping) and STATE_KEY in aggregator_state


def noise_multiplier(l2_bound: float, local_stddev: float, markets: int, dim: int) -> float:
    """The noise multiplier of the Gaussian mechanism with the DDG bound's RDP (module docstring), for
    the scaled L2 bound `l2_bound`, `markets` shares of scaled local scale `local_stddev`, dimension `dim`.
    0 (no guarantee) when there is no noise or σ < 1/2, where the bound does not apply."""
    if local_stddev < 0.5:
        return 0.0
    central = math.sqrt(markets) * local_stddev
    l2 = l2_bound / central
    l1 = math.ceil(l2_bound * min(math.sqrt(dim), l2_bound)) / central
    tau = 10 * sum(math.exp(-2 * (math.pi * local_stddev) ** 2 * k / (k + 1)) for k in range(1, markets))
    rdp_per_half_order = min(l2 ** 2 + 2 * l1 * tau + tau ** 2 * dim, (l2 + math.sqrt(dim) * tau) ** 2)
    return 1.0 / math.sqrt(rdp_per_half_order)


def round_event(aggregator_state) -> dp_accounting.GaussianDpEvent:
    """The `DpEvent` of one round of the mechanism whose state is `aggregator_state` (after a round)."""
    query = _query_state(aggregator_state[STATE_KEY])
    return dp_accounting.GaussianDpEvent(noise_multiplier(
        float(query.l2_norm_bound), float(query.local_stddev), int(aggregator_state["markets"]),
        int(aggregator_state["dim"])))


def _query_state(mean_state):
    """The DDG query's state inside the mean's state; the nesting is TFF 0.87's (as its own
    `DistributedDpSumFactory._unpack_state` reads it): the mean's (value sum, count sum) -> concat ->
    (clipping, rotation seed) -> discretization -> DP factory."""
    (clipping, _), _ = mean_state
    return clipping["inner_agg"]["inner_agg_process"].query_state
