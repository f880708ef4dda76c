"""The CTR workload every CTR figure shares, and the processes and Keras models timed on it.

Both processes come from the CTR stage's builders: FedMM's partial FedAvg by `ctr_stage.build_partial` (as
`train_partial` builds it for a method with codes), TFF's FedAvg by `ctr_fedavg.build_fedavg_process`; same
markets, examples per round, backbone, batch size and learning rates. Codes are random at the default
code-book sizes, not learned: a round's cost depends on how many code fields and rows there are, not on which
code a user has. The throughput figure trains one Keras model per market with `fit`, as each market's local
step in FedMM does (same architecture, optimizer, rate, batch, the same rounds' examples, one epoch per round).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tff_fedmm.api import make_config
from tff_fedmm.bench.measure import Runner, Sample, stateful_step
from tff_fedmm.codes import MarketCodes
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.pipelines.ctr_fedavg import build_fedavg_process
from tff_fedmm.pipelines.ctr_stage import CodeUse, CTRStageConfig, build_partial, federated_dataset, model_fn_for


@dataclass(frozen=True, eq=False)
class CTRWorkload:
    market_set: MarketSet
    backbone: str
    config: CTRStageConfig
    k: tuple[int, int]  # (K_global, K_local) of the codes
    use: CodeUse
    users: int  # rows of the ID tables: the largest market's, as the pipeline sizes them
    items: int
    # Round -> datasets: every process and Keras see the very same examples, never built while timed.
    # Independent of `users`/`items`, so `dataclasses.replace` may share it.
    cache: dict = field(default_factory=dict, repr=False)

    def model_fn(self, coded: bool = True):
        """FedMM's model (with codes, interaction layers as the stage config says), or FedAvg's ID-only one."""
        return model_fn_for(self.backbone, self.users, self.items, self.k if coded else (0, 0), self.config,
                            self.config.share_interaction if coded else True)

    def datasets(self, round_num: int, coded: bool = True) -> list[tf.data.Dataset]:
        if (round_num, coded) not in self.cache:
            featurizers = {n: self.use.featurizer(n) if coded else dict for n in self.market_set.names}
            self.cache[round_num, coded] = [federated_dataset(self.market_set, featurizers, self.config, round_num, i)
                                            for i in range(len(self.market_set.names))]
        return self.cache[round_num, coded]

    def examples(self, round_num: int) -> int:
        """Training examples of round `round_num` over all markets (positives + sampled negatives)."""
        return sum(int(ds.reduce(0, lambda n, batch: n + tf.shape(batch["y"])[0])) for ds in self.datasets(round_num))


def make_workload(market_set: MarketSet, backbone: str, seed: int, data_seed: int, users: int | None = None,
                  items: int | None = None) -> CTRWorkload:
    """FedMM's default CTR stage on `market_set`, with uniform random codes of the default code-book sizes."""
    config = make_config(seed, data_seed=data_seed)
    k = (config.codes.codebook.rqvae.k_global, config.codes.codebook.rqvae.k_local)
    rng = np.random.default_rng([seed, 7])
    draw = lambda n, k_: rng.integers(0, k_, n).astype(np.int32)  # noqa: E731
    codes = {name: MarketCodes(user_global=draw(m.num_users, k[0]), user_local=draw(m.num_users, k[1]),
                               item_global=draw(m.num_items, k[0]), item_local=draw(m.num_items, k[1]),
                               errors=np.zeros(3))
             for name, m in market_set.markets.items()}
    largest = market_set.largest_vocabulary
    return CTRWorkload(market_set, backbone, config.ctr, k, CodeUse(codes), users or largest[0], items or largest[1])


def fedmm_runner(work: CTRWorkload) -> Runner:
    """FedMM's CTR process, server and market states as `train_partial` builds them, tables at the workload's size."""
    rounds, state = build_partial(work.market_set, work.backbone, work.use, work.config, work.k, None, None,
                                  (work.users, work.items))
    return Runner(rounds.process, state, work.datasets, stateful_step)


def fedavg_process(work: CTRWorkload, coded: bool = False):
    """TFF FedAvg on its own ID-only model, or (`coded`) on FedMM's model and examples."""
    return build_fedavg_process(work.model_fn(coded), work.datasets(0, coded)[0].element_spec, work.config.train)


def fedavg_runner(work: CTRWorkload, coded: bool = False) -> Runner:
    process = fedavg_process(work, coded)
    return Runner(process, process.initialize(), lambda r: work.datasets(r, coded))


def _fit_each(_, models: list[tf.keras.Model], datasets: list[tf.data.Dataset]) -> list[tf.keras.Model]:
    for model, ds in zip(models, datasets):
        model.fit(ds, epochs=1, verbose=0)
    return models


def keras_fit_runner(work: CTRWorkload) -> Runner:
    """One Keras model per market, seeded per market as the stage seeds its markets, compiled once."""
    models = []
    for index in range(len(work.market_set.names)):
        tf.keras.utils.set_random_seed(work.config.train.seed * 1000 + index)
        models.append(work.model_fn()())
        models[-1].compile(optimizer=tf.keras.optimizers.Adam(work.config.train.learning_rate),
                           loss="binary_crossentropy")
    return Runner(None, models, lambda r: [ds.map(lambda e: (e["x"], e["y"])) for ds in work.datasets(r)], _fit_each)


def throughput_line(work: CTRWorkload, federated: Sequence[Sample], keras: Sequence[Sample], warmup: int) -> str:
    """Median examples per second; timed round i is paired with round warmup+i's example count."""
    def rate(samples: Sequence[Sample], cpu: bool = False) -> float:
        return statistics.median(work.examples(warmup + i) / (s.cpu if cpu else s.wall) for i, s in enumerate(samples))

    fed, fit, fed_cpu, fit_cpu = rate(federated), rate(keras), rate(federated, True), rate(keras, True)
    return (f"throughput_ratio federated/keras_fit = {fed / fit:.3f} (examples/s: federated {fed:.0f}, "
            f"keras_fit {fit:.0f}; per cpu s: federated {fed_cpu:.0f}, keras_fit {fit_cpu:.0f}, "
            f"ratio {fed_cpu / fit_cpu:.3f}; {len(work.market_set.names)} markets, "
            f"batch {work.config.train.batch_size}, 1 epoch per round)")
