"""The CTR workload every bench figure shares: markets, codes, per-round datasets and the two processes.

FedMM's side is built as `pipelines.ctr_stage.train_partial` builds it for a method with codes, from the
stage's own builders (`model_fn_for`, `federated_dataset`; partial-FedAvg config and seeds;
`share_interaction` from `CTRStageConfig`, False by default: only the global-code embeddings are
shared). The FedAvg side is the stage's `build_fedavg_process` (TFF's `build_weighted_fed_avg`: no
codes, every variable averaged, one common ID table). Both see the same markets, the same positives and
negatives per round, the same backbone, batch size and learning rates.

Codes are drawn at random with the default code-book sizes instead of being learned: the cost of a CTR
round depends on how many code fields and code-book rows there are, not on which code a user has, and
learning them (CF + codebook stages) would add minutes to a benchmark that does not measure them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tff_fedmm.bench.timing import Sample, measure
from tff_fedmm.codes import MarketCodes
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.federated.participation import run_present
from tff_fedmm.pipelines.ctr_stage import (
    CodeUse, CTRStageConfig, build_fedavg_process, federated_dataset, model_fn_for,
)


def random_codes(market_set: MarketSet, k_global: int, k_local: int, seed: int) -> dict[str, MarketCodes]:
    """Uniform codes of the right sizes for every user and item: same shapes and cost as learned ones."""
    rng = np.random.default_rng([seed, 7])
    codes = {}
    for name, m in market_set.markets.items():
        codes[name] = MarketCodes(
            user_global=rng.integers(0, k_global, m.num_users).astype(np.int32),
            user_local=rng.integers(0, k_local, m.num_users).astype(np.int32),
            item_global=rng.integers(0, k_global, m.num_items).astype(np.int32),
            item_local=rng.integers(0, k_local, m.num_items).astype(np.int32),
            errors=np.zeros(3))
    return codes


@dataclass(frozen=True, eq=False)
class CTRWorkload:
    """One set of markets with codes, and the models and per-round datasets both CTR processes train on."""

    market_set: MarketSet
    backbone: str
    config: CTRStageConfig
    k: tuple[int, int]  # (K_global, K_local) of the codes
    codes: dict[str, MarketCodes]
    users: int  # rows of the ID tables: the largest market's count, as the pipeline sizes them
    items: int
    _cache: dict = field(default_factory=dict, init=False, repr=False)  # per-round datasets

    @property
    def use(self) -> CodeUse:
        return CodeUse(self.codes)

    @property
    def fedmm_model_fn(self) -> Callable[[], tf.keras.Model]:
        return self._model_fn(self.k, self.config.share_interaction)  # with codes, as train_partial decides

    @property
    def fedavg_model_fn(self) -> Callable[[], tf.keras.Model]:
        return self._model_fn((0, 0), True)

    def _model_fn(self, k: tuple[int, int], share_interaction: bool) -> Callable[[], tf.keras.Model]:
        return model_fn_for(self.backbone, self.users, self.items, k, self.config, share_interaction)

    def datasets(self, round_num: int, coded: bool) -> list[tf.data.Dataset]:
        """Round `round_num`'s training datasets, in market order; with codes for FedMM, without for FedAvg.

        Cached: every process and Keras see the very same examples for a round, and building them is
        never inside a timed region.
        """
        key = ("datasets", round_num, coded)
        if key not in self._cache:
            featurizers = {name: self.use.featurizer(name) if coded else dict for name in self.market_set.names}
            self._cache[key] = [federated_dataset(self.market_set, featurizers, self.config, round_num, i)
                                for i in range(len(self.market_set.names))]
        return self._cache[key]

    def examples(self, round_num: int) -> int:
        """Training examples in round `round_num` over all markets (positives + sampled negatives)."""
        return sum(int(ds.reduce(0, lambda n, batch: n + tf.shape(batch["y"])[0]))
                   for ds in self.datasets(round_num, True))

    def subset(self, names: list[str]) -> CTRWorkload:
        """The same workload on a subset of markets; model sizes unchanged (one process serves all)."""
        markets = {n: self.market_set.markets[n] for n in names}
        return CTRWorkload(MarketSet(markets, self.market_set.same_item, None, self.market_set.source),
                           self.backbone, self.config, self.k, {n: self.codes[n] for n in names},
                           self.users, self.items)


def make_workload(market_set: MarketSet, backbone: str, seed: int, users: int | None = None,
                  items: int | None = None) -> CTRWorkload:
    """FedMM's default CTR stage on `market_set`, with random codes of the default code-book sizes."""
    from tff_fedmm.api import make_config

    config = make_config(seed)
    k = (config.codes.codebook.rqvae.k_global, config.codes.codebook.rqvae.k_local)
    return CTRWorkload(
        market_set=market_set, backbone=backbone, config=config.ctr, k=k,
        codes=random_codes(market_set, *k, seed=seed),
        users=users or market_set.largest_vocabulary[0], items=items or market_set.largest_vocabulary[1])


def fedmm_ctr_process(workload: CTRWorkload, element_spec=None):
    """FedMM's partial-FedAvg CTR process for `workload`'s model sizes, as train_partial builds it."""
    from tff_fedmm.federated import partial_fedavg as pf

    train = workload.config.train
    return pf.build_partial_fedavg_process(
        workload.fedmm_model_fn, element_spec or workload.datasets(0, True)[0].element_spec,
        pf.PartialFedAvgConfig(client_learning_rate=train.learning_rate), seed=train.seed)


def fedavg_ctr_process(workload: CTRWorkload, coded: bool = False, element_spec=None):
    """TFF FedAvg's CTR process for `workload`'s model sizes (its own ID-only model unless `coded`)."""
    model_fn = workload.fedmm_model_fn if coded else workload.fedavg_model_fn
    return build_fedavg_process(model_fn, element_spec or workload.datasets(0, coded)[0].element_spec,
                                workload.config.train)


class FedMMCTR:
    """FedMM's partial-FedAvg CTR process with its server and per-market states, as train_partial runs it."""

    def __init__(self, workload: CTRWorkload, process=None):
        from tff_fedmm.federated import partial_fedavg as pf

        self.workload = workload
        model_fn = workload.fedmm_model_fn
        train = workload.config.train
        self.pf_config = pf.PartialFedAvgConfig(client_learning_rate=train.learning_rate)
        self.process = process or fedmm_ctr_process(workload)
        self.server = self.process.initialize()
        self.clients = [pf.initial_client_state(model_fn, self.pf_config, i, seed=train.seed * 1000 + i)
                        for i in range(len(workload.market_set.names))]

    def __call__(self, round_num: int) -> Sample:
        data = self.workload.datasets(round_num, True)
        with measure() as sample:  # states put back by client_index, as the pipeline does
            self.server, self.clients, _ = run_present(self.process.next, self.server, self.clients,
                                                       data.__getitem__, list(range(len(data))))
        return sample


class FedAvgCTR:
    """TFF's `build_weighted_fed_avg` on the same markets, as `ctr_stage.train_fedavg` builds it.

    `coded=True`: FedAvg on FedMM's own coded model and examples (the headline `ctr` ratio), so that the
    comparison isolates the algorithm (partial averaging, client state) from the model (the code fields
    FedMM adds as features).
    """

    def __init__(self, workload: CTRWorkload, coded: bool = False):
        self.workload, self.coded = workload, coded
        self.process = fedavg_ctr_process(workload, coded)
        self.state = self.process.initialize()

    def __call__(self, round_num: int) -> Sample:
        data = self.workload.datasets(round_num, self.coded)
        with measure() as sample:
            output = self.process.next(self.state, data)
        self.state = output.state
        return sample
