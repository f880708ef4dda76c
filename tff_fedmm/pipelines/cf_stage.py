"""Stage 1 of FedMM: each market's CF embeddings, trained alone or with a federated shared tower.

With `--cf-tower` the CF models of the markets train together: the `shared_tower_*` layers are averaged
across markets by partial FedAvg while every market's embeddings stay private. Under DP that average is
a DP mean with its own clip (`--dp-cf-clip`), its loss sums stay in the markets, and the stage's charges
(`privacy_report.Ledger`) count every round each market took part in. Under `--dp-unit interaction`
every CF model trains with DP-SGD instead (`training.dp_sgd`: alone, `training.cf_dp`; with the tower,
in the partial-FedAvg client work, whose average is then a plain mean) and each market is charged per step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import tensorflow as tf

from tff_fedmm import progress
from tff_fedmm.checkpoints import RunCheckpoints, StageCheckpoint
from tff_fedmm.data.descriptors import entity_descriptors
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.data.pipelines import to_dataset
from tff_fedmm.data.sampling import ctr_examples
from tff_fedmm.federated import partial_fedavg as pf
from tff_fedmm.federated import privacy as dp
from tff_fedmm.federated.participation import Participation, run_present
from tff_fedmm.models.cf import CFConfig, build_cf_model, embedding_tables, rqvae_inputs
from tff_fedmm.pipelines.dp_sgd_clients import DpSgdClients
from tff_fedmm.pipelines.privacy_audit import audit_partial_fedavg
from tff_fedmm.pipelines.privacy_report import Ledger
from tff_fedmm.pipelines.rounds import run_rounds
from tff_fedmm.seeding import derive_seed, set_global_seed
from tff_fedmm.training.cf import train_cf
from tff_fedmm.training.cf_dp import train_cf_dp

ENTITIES = ("users", "items")
CF_TOWER = "cf-tower"  # the name of the federated CF stage's DP charges
CF_DP_SGD = "cf (dp-sgd)"  # the name of the DP-SGD charges of the markets' own CF models


@dataclass
class CFTables:
    tables: dict[str, tuple[np.ndarray, np.ndarray]]  # market -> (user table, item table)
    charges: list[dict] = field(default_factory=list)  # the DP charges of a federated tower (JSON)


def cf_tables(market_set: MarketSet, config: CFConfig, checkpoints: RunCheckpoints | None = None,
              federated: bool = False, participation: Participation | None = None,
              privacy: dp.PrivacyConfig | None = None) -> CFTables:
    """Each market's CF embedding tables (users, items), checkpointed as a stage: a run exports them, and
    the RQ-VAE rows (`cf_inputs`) are computed from them.

    `federated` (with `config.tower`) trains the CF models together, `participation` picking each round's
    markets and `privacy` applying DP to the tower's average. Otherwise each market trains alone.
    """
    name = ("cf-federated" if federated and config.tower else "cf") + ("-descriptors" if config.descriptors > 0 else "")
    stage = checkpoints.stage(name) if checkpoints else None
    done = stage.load_done() if stage else None
    if done is None:
        progress.start_stage(name, config.epochs if name.startswith("cf-federated") else 0)
        privacy = privacy or dp.PrivacyConfig()
        ledger = Ledger(CF_TOWER if name.startswith("cf-federated") else CF_DP_SGD)
        if name.startswith("cf-federated"):
            tables = _federated_cf_tables(market_set, config, stage, participation or Participation(), privacy, ledger)
        elif privacy.dp_sgd:
            tables = _dp_sgd_cf_tables(market_set, config, privacy, ledger)
        else:
            tables = {n: embedding_tables(train_cf(m, config)) for n, m in market_set.markets.items()}
        done = {f"{n}/{entity}": table for n, pair in tables.items() for entity, table in zip(ENTITIES, pair)}
        done["charges"] = np.array(json.dumps([c.to_json() for c in ledger.charges]))
        if stage:
            stage.save_done(done)
    return CFTables({n: (done[f"{n}/users"], done[f"{n}/items"]) for n in market_set.names},
                    json.loads(str(done["charges"])))


def cf_inputs(market_set: MarketSet, config: CFConfig, checkpoints: RunCheckpoints | None = None,
              federated: bool = False, participation: Participation | None = None,
              tables: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Each market's RQ-VAE input rows (users then items), from its CF tables (`tables`, or `cf_tables`)."""
    tables = tables or cf_tables(market_set, config, checkpoints, federated, participation).tables
    return {n: rqvae_inputs(*t, descriptors=entity_descriptors(market_set.markets[n]) if config.descriptors > 0
                            else None, weight=config.descriptors) for n, t in tables.items()}


def _dp_sgd_cf_tables(market_set: MarketSet, config: CFConfig, privacy: dp.PrivacyConfig,
                      ledger: Ledger) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each market's CF tables trained alone with DP-SGD, each market charged for its steps."""
    tables = {}
    for name, market in market_set.markets.items():
        model, rate, steps = train_cf_dp(market, config, privacy.sgd(dp.DP_SGD_CF_LEARNING_RATE),
                                         dp.noise_seed(privacy, config.seed, f"{ledger.stage}/{name}"))
        ledger.record_steps(name, rate, privacy.noise_multiplier, steps)
        tables[name] = embedding_tables(model)
    return tables


@dataclass(frozen=True)
class _TowerRounds:
    """The federated CF stage's steps: one round's data, one round, the charges and the markets' tables."""

    market_set: MarketSet
    config: CFConfig
    participation: Participation
    process: object  # the audited partial-FedAvg process
    model_fn: Callable[[], tf.keras.Model]
    sgd_clients: DpSgdClients | None  # the markets' DP-SGD data under --dp-unit interaction

    def dataset(self, index: int, round_num: int) -> tf.data.Dataset:
        """Market `index`'s examples of round `round_num`: fresh negatives and shuffle per round."""
        if self.sgd_clients:
            return self.sgd_clients.dataset(index, round_num)
        name = self.market_set.names[index]
        return to_dataset(ctr_examples(self.market_set.markets[name], "train", neg_ratio=self.config.neg_ratio,
                                       seed=self.config.seed, epoch=round_num),
                          batch_size=self.config.batch_size,
                          shuffle_seed=derive_seed(self.config.seed, "cf-shuffle", name, round_num))

    def present(self, round_num: int) -> list[int]:
        return self.participation.present("cf-federated", round_num, len(self.market_set.names))

    def round(self, state: tuple, round_num: int) -> tuple[tuple, np.ndarray]:
        """One round with the markets present; its row is the mean training loss (NaN when it may not cross)."""
        server, clients, metrics = run_present(self.process.next, state[0], state[1],
                                               lambda i: self.dataset(i, round_num), self.present(round_num))
        loss = float(metrics["client_work"]["loss"]) if metrics and "client_work" in metrics else float("nan")
        progress.round_done(cf_loss=loss)
        return (server, clients), np.array([loss])

    def charge(self, ledger: Ledger, privacy: dp.PrivacyConfig, server, rounds_run: int) -> None:
        """Charges each market for every round it took part in, DP-SGD steps or DP-mean rounds."""
        presence = [self.present(r) for r in range(rounds_run)]
        if self.sgd_clients:
            self.sgd_clients.charge(ledger, presence)
        else:
            ledger.record(privacy, server.aggregator, self.market_set.names, presence)

    def tables(self, server, clients: list) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each market's (user, item) tables from the shared tower and its private state, cut to its own size."""
        tables = {}
        for client in clients:
            name = self.market_set.names[int(client["client_index"])]
            users, items = embedding_tables(pf.market_model(self.model_fn, server.global_model_weights, client))
            market = self.market_set.markets[name]
            tables[name] = (users[: market.num_users], items[: market.num_items])
        return tables


def _build_tower(market_set: MarketSet, config: CFConfig, checkpoint: StageCheckpoint | None,
                 participation: Participation, privacy: dp.PrivacyConfig,
                 ledger: Ledger) -> tuple[_TowerRounds, tuple]:
    """The audited process and every market's starting state, as (the rounds, their initial state)."""
    names = market_set.names
    users, items = market_set.largest_vocabulary
    model_fn = lambda: build_cf_model(users, items, config)  # noqa: E731
    sgd_clients = (DpSgdClients(market_set, privacy, ledger.stage, config.seed, dp.DP_SGD_CF_LEARNING_RATE,
                                config.neg_ratio, checkpoint) if privacy.dp_sgd else None)
    pf_config = pf.PartialFedAvgConfig(client_learning_rate=config.learning_rate)
    if sgd_clients:
        pf_config, aggregator = sgd_clients.client_config(pf_config), sgd_clients.aggregator()
    else:
        aggregator = (dp.dp_mean_factory(privacy, privacy.cf_clip, participation.expected(len(names)),
                                         dp.noise_seed(privacy, config.seed, ledger.stage)) if privacy.dp else None)
    rounds = _TowerRounds(market_set, config, participation, None, model_fn, sgd_clients)
    process = pf.build_partial_fedavg_process(model_fn, rounds.dataset(0, 0).element_spec, pf_config, aggregator,
                                              seed=derive_seed(config.seed, "cf-federated-server"),
                                              metrics_cross=not privacy.dp)
    audit_partial_fedavg(process, model_fn, "CF stage, shared tower", checkpoint)
    clients = [pf.initial_client_state(model_fn, pf_config, i, seed=derive_seed(config.seed, "cf-federated", name))
               for i, name in enumerate(names)]
    return replace(rounds, process=process), (process.initialize(), clients)


def _federated_cf_tables(market_set: MarketSet, config: CFConfig, checkpoint: StageCheckpoint | None,
                         participation: Participation, privacy: dp.PrivacyConfig,
                         ledger: Ledger) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The markets' CF tables trained together for `config.epochs` rounds, checkpointed after each."""
    set_global_seed(config.seed, "cf-federated")
    rounds, initial = _build_tower(market_set, config, checkpoint, participation, privacy, ledger)
    result = run_rounds(initial, rounds.round, config.epochs, 1, checkpoint=checkpoint)
    server, clients = result.best_state
    rounds.charge(ledger, privacy, server, len(result.metrics))
    return rounds.tables(server, clients)
