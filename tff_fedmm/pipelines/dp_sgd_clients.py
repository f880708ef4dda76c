"""DP-SGD in a partial-FedAvg stage (`--dp-unit interaction`): the markets' datasets, client settings,
aggregator and charges, shared by the federated CF tower (`cf_stage`) and the CTR stage (`ctr_stage`).

Each round a market takes one pass of Poisson-sampled DP-SGD steps over fresh records, every draw from a
seed of its own per round: derived from `--dp-noise-seed` for reproducible runs, else from the stage's
secret seed (OS entropy, `privacy.noise_seed`), which the stage's checkpoint keeps until the stage is done
(`StageCheckpoint.secret_seed`), so that a resumed run recomputes a cut round with the same draws. What the
market sends (its shared variables' change) is computed from DP-SGD-trained values only, so it is averaged
by a plain unweighted mean: the example count, which one interaction changes, stays in the market too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fedmm.checkpoints import StageCheckpoint
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.data.pipelines import market_record_dataset
from tff_fedmm.federated import privacy as dp
from tff_fedmm.pipelines.privacy_report import Ledger
from tff_fedmm.seeding import derive_seed


@dataclass(frozen=True)
class DpSgdClients:
    market_set: MarketSet
    privacy: dp.PrivacyConfig
    stage: str  # the ledger's stage: it keys the noise seeds too
    seed: int  # the stage's training seed
    learning_rate: float
    neg_ratio: int
    checkpoint: StageCheckpoint | None = field(default=None, compare=False)  # keeps the secret seed

    def __post_init__(self) -> None:
        if not self.privacy.dp_sgd:
            raise ValueError("DpSgdClients needs a PrivacyConfig with --dp-unit interaction and a noise multiplier")

    @property
    def sgd(self):
        return self.privacy.sgd(self.learning_rate)

    def client_config(self, config):
        """`config` (a `PartialFedAvgConfig`) training with DP-SGD, one local pass per round."""
        if config.local_epochs != 1:
            raise ValueError("DP-SGD draws fresh Poisson batches per pass: one local epoch per round")
        return replace(config, dp_sgd=self.sgd)

    def aggregator(self):
        return tff.aggregators.UnweightedMeanFactory()

    def _rate_steps(self, name: str) -> tuple[float, int]:
        records = len(self.market_set.markets[name].split("train"))
        return self.sgd.sampling_rate(records), self.sgd.steps_per_epoch(records)

    def dataset(self, index: int, round_num: int, featurize: Callable = dict) -> tf.data.Dataset:
        name = self.market_set.names[index]
        rate, steps = self._rate_steps(name)
        rng = np.random.default_rng(self._round_seed(f"{self.stage}/{name}/{round_num}"))
        return market_record_dataset(self.market_set.markets[name], self.neg_ratio, rate, steps, rng, featurize)

    @cached_property
    def _secret(self) -> int:
        draw = lambda: dp.noise_seed(self.privacy, self.seed, self.stage)  # noqa: E731
        return self.checkpoint.secret_seed(draw) if self.checkpoint else draw()

    def _round_seed(self, key: str) -> int:
        if self.privacy.noise_seed is not None:  # reproducible (and not private): from --dp-noise-seed
            return dp.noise_seed(self.privacy, self.seed, key)
        return derive_seed(self._secret, "dp-sgd", key)

    def charge(self, ledger: Ledger, presence: Iterable[Sequence[int]]) -> None:
        """Charges each market for the steps of every round it took part in (`presence`: per round run)."""
        rounds = [0] * len(self.market_set.names)
        for present in presence:
            for i in present:
                rounds[i] += 1
        for name, count in zip(self.market_set.names, rounds):
            rate, steps = self._rate_steps(name)
            ledger.record_steps(name, rate, self.privacy.noise_multiplier, steps * count)
