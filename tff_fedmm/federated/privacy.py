"""Privacy options of the federated aggregations: differential privacy, secure summation.

DP (`--dp-noise-multiplier z`) wraps every federated aggregation that carries values derived from a
market's data in TFF's `DifferentiallyPrivateFactory` (`dp_mean_factory`): the global codebook (with its
anchor aggregates), the CTR stage's shared variables (FedMM, fedper, fedper-anchored, FedAvg) and the CF
tower. Each market's update is clipped to the L2 norm of its stage (`--dp-clip` for the codebook,
`--dp-ctr-clip`, `--dp-cf-clip`; fixed, or adapted towards the median update norm as in TFF's
`gaussian_adaptive`), the clipped updates are summed, Gaussian noise of standard deviation z·clip is
added and the sum is divided by the expected number of markets per round. Under DP no other per-round
value crosses: the summed training metrics stay in the markets and rounds are fixed (no cross-market
early stopping). ε is composed over every stage and round by `federated.accounting`, with the unit
add/remove one market's whole data over the whole run; no amplification by sampling is claimed, so
market drop-out only makes the bound looser than necessary, never wrong.

Secure aggregation (`--secure-agg`) replaces every summation of the codebook aggregation by TFF's
`SecureSumFactory`: values are clipped to fixed bounds, quantized to 32-bit integers and summed with
`federated_secure_sum_bitwidth`, so the server only ever sees the sum. In this simulation the protocol
is replaced by its plain body at compile time (`tff.backends.test.replace_secure_intrinsics_with_bodies`,
installed by `federated.context`); the computation, its types and its quantization are the real ones.

DP noise is secret by default: its seed is drawn from the operating system's entropy when the stage is
built and lives only in the server state (the DP query's state) and the stage's round checkpoints, which
are deleted once the stage has finished (`checkpoints.StageCheckpoint.save_done`). Nothing in a finished
run folder can regenerate it. `--dp-noise-seed N` makes the noise reproducible for research; the run
folder then records that anyone who knows the run's settings can regenerate and subtract it.

Where the noise is added (`--dp-mode`): `central` (default) as above, by the server after summing, so the
server itself sees each market's clipped update (or with `--secure-agg` the exact sum); `distributed`
(`federated.distributed_dp`): each market adds its share of discrete Gaussian noise before TFF's secure
sum, so the server only sees a noised sum; ε is then the distributed discrete Gaussian's bound.

The unit (`--dp-unit`): `market` (default) is all of the above. `interaction` protects one interaction
of one market instead, by DP-SGD (`training.dp_sgd`) in every local training step on a market's raw
interactions whose result reaches a shared update: the CF stage (each market's tables, or with
`--cf-tower` the federated CF model, every variable) and the CTR stage of the partial-FedAvg methods
(fedmm and its code variants, fedper, fedper-anchored; every variable, private ID embeddings included).
`--dp-noise-multiplier` is then DP-SGD's noise multiplier and `--dp-example-clip` its per-record clip. The
RQ-VAE / codebook stage reads only the DP-trained CF tables (no `--level1 descriptors`: those are counted
from the interactions), so it is post-processing and needs no noise of its own; the aggregations are
plain (unweighted) means, since what they average is already DP. The entity vocabularies (which users
and items a market has) are treated as public. FedAvg is refused: TFF's FedAvg client work has no
per-example clipping.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tff_fedmm.errors import UsageError
from tff_fedmm.seeding import derive_seed

if TYPE_CHECKING:  # TFF and dp_accounting load on first use: configs and checks stay fast
    import dp_accounting
    import tensorflow_federated as tff

    from tff_fedmm.federated.codebook_aggregator import GlobalCodebookFactory

# Secure-sum bounds (clip, then quantize to 32 bits within them). A market's weighted codebook update
# is its per-coordinate change (|Δ| < 1 after a round of Adam at lr 3e-3) times its number of RQ-VAE rows
# (users + items, < 65,536 in every market here): 2^16 is reached by no coordinate in our runs, and the
# sum's quantization step, 2^17·markets/2^32, is far below float32 resolution once divided by the total
# weight. Weights (rows) up to 2^24. Under DP a record is already clipped to norm C, so no coordinate
# exceeds C; adaptive clipping starts at 0.1 and grows geometrically, 2^8 bounds it with a wide margin.
SECURE_VALUE_BOUND = 2.0**16
SECURE_WEIGHT_BOUND = 2.0**24
SECURE_DP_RECORD_BOUND = 2.0**8

CENTRAL, DISTRIBUTED = "central", "distributed"
MODES = (CENTRAL, DISTRIBUTED)
MARKET, INTERACTION = "market", "interaction"  # the same names as `accounting.MARKET/INTERACTION`
UNITS = (MARKET, INTERACTION)
# DP-SGD's SGD learning rates per stage (momentum 0.9, 256 records per step in expectation). Set before any
# run, not yet tuned (BUILD_NOTES, "Interaction-level DP"): a row's noise per step is lr x z x clip / 256,
# about 0.002 at z = 1; tuning belongs on the validation split, never on test.
DP_SGD_CF_LEARNING_RATE = 0.5
DP_SGD_CTR_LEARNING_RATE = 0.5
NOISE_SECRET = "secret: seeded from OS entropy, deleted with the stage's round checkpoints"
NOISE_REPRODUCIBLE = ("reproducible (--dp-noise-seed): anyone who knows the run's settings can regenerate and "
                      "subtract it, so the reported epsilon does not hold against them")
NOISE_DISTRIBUTED = ("distributed: each market adds a discrete Gaussian share from its own randomness before the "
                     "secure sum; no seed of the run can regenerate it")


@dataclass(frozen=True)
class PrivacyConfig:
    noise_multiplier: float | None = None  # None: no DP
    clip: float | None = None  # a fixed L2 clip; None: adaptive clipping
    delta: float = 1e-5
    secure_agg: bool = False
    noise_seed: int | None = None  # None: secret noise (OS entropy); an int: reproducible, not private
    # The L2 clips of the other DP stages (`clip` is the codebook's); None: adaptive. Defaults from the
    # per-market update norms of tasks/dp_update_norms.py (BUILD_NOTES): about the 90th percentile of
    # FedMM's CTR updates, about the median of the CF tower's (where TFF's adaptive clipping aims).
    ctr_clip: float | None = 0.5
    cf_clip: float | None = 2.0
    mode: str = CENTRAL  # where the noise is added: by the server (central) or by each market (distributed)
    unit: str = MARKET  # what one (ε, δ) protects: one market's data, or one interaction (DP-SGD)
    example_clip: float = 1.0  # DP-SGD's L2 clip of one record's gradient (interaction unit)

    @property
    def clips_by_flag(self) -> tuple[tuple[str, float | None], ...]:
        """Each DP stage's clip with the flag that sets it (codebook, CTR, CF tower)."""
        return (("--dp-clip", self.clip), ("--dp-ctr-clip", self.ctr_clip), ("--dp-cf-clip", self.cf_clip))

    @property
    def dp(self) -> bool:
        return self.noise_multiplier is not None

    @property
    def dp_sgd(self) -> bool:
        """Interaction-level DP: DP-SGD in the markets' training, plain aggregations."""
        return self.dp and self.unit == INTERACTION

    def aggregation(self) -> PrivacyConfig:
        """What the federated aggregations apply: all of this at the market unit; under DP-SGD only the
        secure sum (the averaged values are already DP: post-processing)."""
        return PrivacyConfig(secure_agg=self.secure_agg) if self.dp_sgd else self

    def sgd(self, learning_rate: float):
        """The `dp_sgd.DpSgdConfig` of a stage training at `learning_rate`."""
        from tff_fedmm.training.dp_sgd import DpSgdConfig

        return DpSgdConfig(self.noise_multiplier, self.example_clip, learning_rate=learning_rate)


def check_privacy(privacy: PrivacyConfig, rule: str, markets_per_round: float, dropout_rate: float = 0.0) -> None:
    """Raises `UsageError`, naming the flag, for DP settings the mechanism cannot honour."""
    if privacy.mode not in MODES:
        raise UsageError(f"--dp-mode: expected one of {', '.join(MODES)}, got {privacy.mode!r}")
    if privacy.unit not in UNITS:
        raise UsageError(f"--dp-unit: expected one of {', '.join(UNITS)}, got {privacy.unit!r}")
    if privacy.unit == INTERACTION:
        _check_interaction(privacy)
        return
    if privacy.mode == DISTRIBUTED:
        _check_distributed(privacy, dropout_rate)
    if not privacy.dp:
        for flag, value in (("--dp-clip", privacy.clip), ("--dp-noise-seed", privacy.noise_seed)):
            if value is not None:
                raise UsageError(f"{flag}: only used with --dp-noise-multiplier (DP is off without it)")
        return
    if privacy.noise_multiplier < 0:
        raise UsageError(f"--dp-noise-multiplier: expected a number >= 0, got {privacy.noise_multiplier}")
    for flag, clip in privacy.clips_by_flag:
        if clip is not None and clip <= 0:
            raise UsageError(f"{flag}: expected a positive L2 norm or 'adaptive', got {clip}")
    if not 0 < privacy.delta < 1:
        raise UsageError(f"--dp-delta: expected a number in (0, 1), got {privacy.delta}")
    if rule != "fedavg":
        raise UsageError("--dp-noise-multiplier: DP needs --codebook-rule fedavg (the kmeans rule's per-code sums "
                         "grow with a market's size, so no fixed clip bounds a market's contribution)")
    limit = 0.1 * markets_per_round
    for flag, clip in privacy.clips_by_flag:
        if clip is None and privacy.noise_multiplier >= limit:
            raise UsageError(f"{flag} adaptive: TFF's adaptive clipping needs --dp-noise-multiplier < 0.1 x markets "
                             f"per round = {limit:g} here (it spends part of the budget on the clip); "
                             f"give a fixed {flag} instead")


def _check_distributed(privacy: PrivacyConfig, dropout_rate: float) -> None:
    """What distributed DP (`federated.distributed_dp`) cannot honour."""
    if not privacy.dp:
        raise UsageError("--dp-mode distributed: needs --dp-noise-multiplier and --dp-clip (DP is off without them)")
    if privacy.noise_seed is not None:
        raise UsageError("--dp-noise-seed: not with --dp-mode distributed (each market draws its own noise share; "
                         "no seed of the run can make it reproducible)")
    for flag, clip in privacy.clips_by_flag:
        if clip is None:
            raise UsageError(f"{flag} adaptive: not with --dp-mode distributed; give a fixed {flag} (the "
                             "epsilon of distributed DP is computed for a fixed clip)")
    if dropout_rate > 0:
        raise UsageError("--dropout-rate: not with --dp-mode distributed (every market of a round adds its share "
                         "of the noise; with markets absent the sum carries less noise than epsilon assumes)")


def _check_interaction(privacy: PrivacyConfig) -> None:
    """What interaction-level DP (DP-SGD) cannot honour."""
    if not privacy.dp:
        raise UsageError("--dp-unit interaction: needs --dp-noise-multiplier (DP-SGD's noise multiplier)")
    if privacy.noise_multiplier <= 0:
        raise UsageError(f"--dp-noise-multiplier: expected a number > 0 with --dp-unit interaction, "
                         f"got {privacy.noise_multiplier}")
    if privacy.example_clip <= 0:
        raise UsageError(f"--dp-example-clip: expected a positive L2 norm, got {privacy.example_clip}")
    if privacy.mode == DISTRIBUTED:
        raise UsageError("--dp-mode distributed: not with --dp-unit interaction (each market adds its DP-SGD noise "
                         "itself before anything leaves it; there is no server noise to distribute)")
    if privacy.clip is not None:
        raise UsageError("--dp-clip: not with --dp-unit interaction (a market-level clip; DP-SGD clips each "
                         "record's gradient to --dp-example-clip)")
    if not 0 < privacy.delta < 1:
        raise UsageError(f"--dp-delta: expected a number in (0, 1), got {privacy.delta}")


def noise_seed(privacy: PrivacyConfig, training_seed: int, stage: str) -> int:
    """The seed of `stage`'s DP noise: 62 bits of OS entropy nobody else can redraw, or, with
    `--dp-noise-seed`, one derived from it, the stage and the training seed (each stage and seed of a run
    gets its own noise: stages sharing one noise would cancel it in their difference)."""
    if privacy.noise_seed is None:
        return secrets.randbits(62)
    return derive_seed(privacy.noise_seed, "dp-noise", stage, training_seed)


def codebook_aggregator(rule: str, privacy: PrivacyConfig, markets_per_round: float,
                        seed: int) -> GlobalCodebookFactory:
    """The global-codebook aggregator with DP and/or secure summation wrapped around its sums; `seed` seeds
    the DP noise (`noise_seed`)."""
    import tensorflow_federated as tff

    from tff_fedmm.federated.codebook_aggregator import GlobalCodebookFactory

    secure = tff.aggregators.SecureSumFactory
    if privacy.secure_agg or privacy.mode == DISTRIBUTED:
        _quiet_unused_assert_warnings()
    if privacy.dp:
        check_privacy(privacy, rule, markets_per_round)
        return GlobalCodebookFactory(rule, mean_factory=dp_mean_factory(privacy, privacy.clip, markets_per_round,
                                                                         seed))
    if privacy.secure_agg:
        return GlobalCodebookFactory(
            rule,
            mean_factory=tff.aggregators.MeanFactory(value_sum_factory=secure(SECURE_VALUE_BOUND),
                                                     weight_sum_factory=secure(SECURE_WEIGHT_BOUND)),
            sum_factory=secure(SECURE_VALUE_BOUND))
    return GlobalCodebookFactory(rule)


def dp_mean_factory(privacy: PrivacyConfig, clip: float | None, markets_per_round: float,
                    seed: int) -> tff.aggregators.UnweightedAggregationFactory:
    """The DP mean of one stage's shared update, the one place every DP aggregation of a run is built:
    each market's update clipped to L2 norm `clip` (None: adaptive), summed (securely with `--secure-agg`),
    Gaussian noise of `privacy.noise_multiplier` x clip seeded by `seed`, divided by `markets_per_round`.
    With `--dp-mode distributed` the markets add the noise themselves (`distributed_dp`; `seed` unused)."""
    import tensorflow_federated as tff

    if privacy.mode == DISTRIBUTED:
        from tff_fedmm.federated.distributed_dp import DistributedDpMeanFactory

        return DistributedDpMeanFactory(privacy.noise_multiplier, round(markets_per_round), clip)

    from tff_fedmm.federated import dp_noise

    record_sum = tff.aggregators.SecureSumFactory(SECURE_DP_RECORD_BOUND) if privacy.secure_agg else None
    if clip is None:
        return dp_noise.gaussian_adaptive(privacy.noise_multiplier, markets_per_round, seed, record_sum=record_sum)
    return dp_noise.gaussian_fixed(privacy.noise_multiplier, markets_per_round, clip, seed, record_sum=record_sum)


class _UnusedAssertFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Object was never used" not in record.getMessage()


def _quiet_unused_assert_warnings() -> None:
    """TFF 0.87's secure sum builds an `assert_less_equal` whose op nothing in its graph reads, and
    TensorFlow's `tf_should_use` logs a 20-line "Object was never used" error for it at every trace,
    on every run with `--secure-agg` or `--dp-mode distributed`. It says nothing about the run; drop just
    that message."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _UnusedAssertFilter) for f in logger.filters):
        logger.addFilter(_UnusedAssertFilter())


def round_event(aggregator_state) -> dp_accounting.DpEvent:
    """The `DpEvent` the DP aggregator recorded in the server state for its last round (for distributed DP,
    the bound `distributed_dp.round_event` computes from the state)."""
    from tensorflow_federated.python.aggregators.differential_privacy import extract_dp_event_from_state

    from tff_fedmm.federated import distributed_dp

    if distributed_dp.is_state(aggregator_state):
        return distributed_dp.round_event(aggregator_state)
    return extract_dp_event_from_state(aggregator_state)
