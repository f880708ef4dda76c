"""The CTR workload every figure shares: markets with codes, per-round datasets, and both CTR processes.

Both processes come from the CTR stage's builders: FedMM's partial FedAvg as `train_partial`
builds it for a method with codes, TFF's FedAvg as `ctr_fedavg.train_fedavg` does; same markets, examples per round,
backbone, batch size and learning rates. Codes are random at the default code-book sizes, not learned: a
round's cost depends on how many code fields and rows there are, not on which code a user has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tff_fedmm.api import make_config
from tff_fedmm.bench.timing import Runner, stateful_step
from tff_fedmm.codes import MarketCodes
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.federated import partial_fedavg as pf
from tff_fedmm.pipelines.ctr_fedavg import build_fedavg_process
from tff_fedmm.pipelines.ctr_stage import CodeUse, CTRStageConfig, federated_dataset, model_fn_for


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


def make_workload(market_set: MarketSet, backbone: str, seed: int, users: int | None = None,
                  items: int | None = None) -> CTRWorkload:
    """FedMM's default CTR stage on `market_set`, with uniform random codes of the default code-book sizes."""
    config = make_config(seed)
    k = (config.codes.codebook.rqvae.k_global, config.codes.codebook.rqvae.k_local)
    rng = np.random.default_rng([seed, 7])
    draw = lambda n, k_: rng.integers(0, k_, n).astype(np.int32)  # noqa: E731
    codes = {name: MarketCodes(user_global=draw(m.num_users, k[0]), user_local=draw(m.num_users, k[1]),
                               item_global=draw(m.num_items, k[0]), item_local=draw(m.num_items, k[1]),
                               errors=np.zeros(3))
             for name, m in market_set.markets.items()}
    largest = market_set.largest_vocabulary
    return CTRWorkload(market_set, backbone, config.ctr, k, CodeUse(codes), users or largest[0], items or largest[1])


def _pf_config(work: CTRWorkload) -> pf.PartialFedAvgConfig:
    return pf.PartialFedAvgConfig(client_learning_rate=work.config.train.learning_rate)


def fedmm_process(work: CTRWorkload):
    return pf.build_partial_fedavg_process(work.model_fn(), work.datasets(0)[0].element_spec, _pf_config(work),
                                           seed=work.config.train.seed)


def fedavg_process(work: CTRWorkload, coded: bool = False):
    """TFF FedAvg on its own ID-only model, or (`coded`) on FedMM's model and examples."""
    return build_fedavg_process(work.model_fn(coded), work.datasets(0, coded)[0].element_spec, work.config.train)


def fedmm_runner(work: CTRWorkload, process=None) -> Runner:
    """FedMM's CTR process with server and market states, as `train_partial` runs it (`process`: reuse one)."""
    process = process or fedmm_process(work)
    server = process.initialize()
    clients = [pf.initial_client_state(work.model_fn(), _pf_config(work), i, seed=work.config.train.seed * 1000 + i)
               for i in range(len(work.market_set.names))]
    return Runner(process, (server, clients), work.datasets, stateful_step)


def fedavg_runner(work: CTRWorkload, coded: bool = False) -> Runner:
    process = fedavg_process(work, coded)
    return Runner(process, process.initialize(), lambda r: work.datasets(r, coded))
