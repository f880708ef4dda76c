"""Stage 3: CTR training for every method, on the same data, models and validation protocol.

- `train_local`: each market alone (Keras); with codes for `local+codes`.
- `train_partial`: the stateful partial-FedAvg process — `shared_*` layers averaged, ID and local-code
  embeddings private across rounds (`fedper` without codes, the FedMM variants with codes).
- `train_fedavg` (`pipelines.ctr_fedavg`): TFF's own `build_weighted_fed_avg`, every variable averaged;
  each market's IDs index one common table, so ID k of every market shares a row (the naive approach
  FedMM argues against).
- `train_centralized` (`pipelines.ctr_centralized`): one Keras model on the pooled markets with
  market-offset IDs (not private); with anchor fields (`centralized-anchored`), anchor items also share one
  row by key.

Every market keeps the round (federated) or epoch (Keras; for `centralized` each market's own best
epoch of the pooled model) with its lowest validation LogLoss on that market (see `pipelines.rounds` and
`training.ctr`); the test split is only ever used for the final numbers. Every method's test metrics include
`auc_held_out`, on the recurring items anchored mode never uses (`data.anchors`), strict runs too. Each trainer seeds
TensorFlow from (training seed, stage) first; evaluation candidates come from `train.data_seed`. A trainer's
`keep` hook is handed each market's selected model with its features, right when its test metrics are
computed: what a run exports (`pipelines.exports`) is then the very model its numbers come from.

Under DP (`CTRStageConfig.privacy`) both federated trainers average their shared variables with a DP mean
(`privacy.dp_mean_factory`, clip `--dp-ctr-clip`; FedAvg becomes TFF's `build_unweighted_fed_avg`), keep
their loss sums in the markets, run every round (no early stopping across markets; each market still
keeps its own best round by its own validation) and charge their `ledger` for each market's rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import tensorflow as tf

from tff_fedmm.checkpoints import StageCheckpoint
from tff_fedmm.codes import MarketCodes
from tff_fedmm.data.anchors import public_anchors
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.data.pipelines import to_dataset
from tff_fedmm.data.sampling import ctr_examples
from tff_fedmm.eval.evaluate import evaluate_market
from tff_fedmm.features import MarketFeatures
from tff_fedmm.federated import partial_fedavg as pf
from tff_fedmm.federated import privacy as dp
from tff_fedmm.federated.participation import Participation, run_present
from tff_fedmm.models.ctr import build_ctr_model
from tff_fedmm.training.ctr import CTRTrainConfig, fit_ctr_on_market
from tff_fedmm import progress
from tff_fedmm.pipelines.dp_sgd_clients import DpSgdClients
from tff_fedmm.pipelines.privacy_audit import audit_partial_fedavg
from tff_fedmm.pipelines.privacy_report import Ledger
from tff_fedmm.pipelines.rounds import RoundsResult, Selection, run_rounds
from tff_fedmm.seeding import derive_seed, set_global_seed

Metrics = dict[str, dict[str, float]]  # market -> metric -> value
# keep(market, model, features): a market's selected model, called while the model holds its selected weights
Keep = Callable[[str, tf.keras.Model, MarketFeatures], None]


@dataclass(frozen=True)
class CTRStageConfig:
    train: CTRTrainConfig = CTRTrainConfig()
    rounds: int = 20
    round_patience: int = 5
    embed_dim: int = 16
    hidden: tuple[int, ...] = (64, 32)
    # False: FedMM shares only the global-code embeddings; interaction layers stay in each market. Chosen
    # on XMarket validation (BUILD_NOTES); fedper, which has no codes, always shares its interaction layers.
    share_interaction: bool = False
    participation: Participation = Participation()  # which markets take part in each federated round
    privacy: dp.PrivacyConfig = dp.PrivacyConfig()  # DP on the shared variables' average (`ctr_clip`)

    def patience(self) -> int:
        """Rounds without improvement in any market before stopping; under DP none (fixed rounds)."""
        return self.rounds if self.privacy.dp else self.round_patience

    def dp_mean(self, markets: int, ledger: Ledger | None):
        """The DP mean of the shared updates under market-level DP (noise seeded for `ledger`'s stage), else None."""
        p = self.privacy
        if not p.dp or p.dp_sgd:
            return None
        return dp.dp_mean_factory(p, p.ctr_clip, self.participation.expected(markets),
                                  dp.noise_seed(p, self.train.seed, ledger.stage if ledger else "ctr"))


# What validation tuning may change per method and backbone (`CompareConfig.tuned`, tasks/tune_baselines.py).
CTR_SETTINGS = ("learning_rate", "embed_dim", "patience")


def with_settings(ctr: CTRStageConfig, settings: dict[str, float]) -> CTRStageConfig:
    """`ctr` with tuned settings: the learning rate and patience apply to Keras epochs and federated rounds
    alike, the embedding size to every embedding of the CTR model."""
    train = replace(ctr.train, learning_rate=float(settings.get("learning_rate", ctr.train.learning_rate)),
                    patience=int(settings.get("patience", ctr.train.patience)))
    return replace(ctr, train=train, embed_dim=int(settings.get("embed_dim", ctr.embed_dim)),
                   round_patience=int(settings.get("patience", ctr.round_patience)))


@dataclass(frozen=True)
class CodeUse:
    """Which code fields a method feeds its CTR model."""

    codes: dict[str, MarketCodes] | None = None
    use_global: bool = True
    use_local: bool = True

    def sizes(self, k_global: int, k_local: int) -> tuple[int, int]:
        if self.codes is None:
            return 0, 0
        return (k_global if self.use_global else 0), (k_local if self.use_local else 0)

    def featurizer(self, market: str) -> MarketFeatures:
        if self.codes is None:
            return MarketFeatures()
        return MarketFeatures(self.codes[market], self.use_global, self.use_local)


def model_fn_for(backbone: str, users: int, items: int, k: tuple[int, int], config: CTRStageConfig,
                 share_interaction: bool = True):
    return lambda: build_ctr_model(backbone, num_users=users, num_items=items, k_global=k[0], k_local=k[1],
                                   embed_dim=config.embed_dim, hidden=config.hidden,
                                   share_interaction=share_interaction)


def market_test_metrics(model: tf.keras.Model, market_set: MarketSet, name: str, features: MarketFeatures,
                        data_seed: int, keep: Keep | None = None) -> dict[str, float]:
    """Market `name`'s test metrics from its selected `model`, which `keep` gets first."""
    if keep is not None:
        keep(name, model, features)
    held_out = public_anchors(market_set, data_seed).held_out[name]  # the same split as anchored mode's
    return evaluate_market(model, market_set.markets[name], "test", features, data_seed=data_seed, held_out=held_out)


def selected_test_metrics(models: dict, market_set: MarketSet, featurizers: dict, data_seed: int,
                          keep: Keep | None) -> Metrics:
    return {name: market_test_metrics(models[name], market_set, name, featurizers[name], data_seed, keep)
            for name in market_set.names}


def _valid(model, market, featurize, data_seed) -> tuple[float, float]:
    result = evaluate_market(model, market, "valid", featurize, data_seed=data_seed, ranking=False)
    return result["auc"], result["logloss"]


def valid_row(models: dict, market_set: MarketSet, featurizers: dict, data_seed: int) -> np.ndarray:
    """Every market's valid AUC, then every market's valid LogLoss (the selection criterion)."""
    pairs = [_valid(models[n], market_set.markets[n], featurizers[n], data_seed) for n in market_set.names]
    return np.array([a for a, _ in pairs] + [ll for _, ll in pairs])


def round_row(valid: np.ndarray, train_loss: float) -> np.ndarray:
    """A federated round's metrics: every market's valid AUC and LogLoss, then the round's train loss
    (the example-weighted mean over markets, which is what the server learns)."""
    m = len(valid) // 2
    progress.round_done(valid_auc=float(np.mean(valid[:m])), valid_logloss=float(np.mean(valid[m:])))
    return np.append(valid, train_loss)


def neg_logloss(row: np.ndarray) -> np.ndarray:
    """Per-market selection scores from a `round_row`: minus each market's valid LogLoss."""
    m = (len(row) - 1) // 2
    return -row[m:2 * m]


def train_local(market_set: MarketSet, backbone: str, use: CodeUse, config: CTRStageConfig,
                k: tuple[int, int], keep: Keep | None = None) -> tuple[Metrics, list[dict]]:
    models, featurizers, history = {}, {}, []
    for index, (name, market) in enumerate(market_set.markets.items()):
        featurizers[name] = use.featurizer(name)
        set_global_seed(config.train.seed, "ctr-local", name)
        models[name] = model_fn_for(backbone, market.num_users, market.num_items, use.sizes(*k), config)()
        for epoch, (auc, ll, loss) in enumerate(fit_ctr_on_market(models[name], market, config.train,
                                                                  featurizers[name])):
            history.append({"round": epoch + 1, "market": name, "valid_auc": auc, "valid_logloss": ll,
                            "train_loss": loss})
    return selected_test_metrics(models, market_set, featurizers, config.train.data_seed, keep), history


def federated_dataset(market_set: MarketSet, featurizers: dict, config: CTRStageConfig, round_num: int,
                       index: int) -> tf.data.Dataset:
    t, name = config.train, market_set.names[index]
    return to_dataset(featurizers[name](ctr_examples(market_set.markets[name], "train", neg_ratio=t.neg_ratio,
                                                     seed=t.seed, epoch=round_num)),
                      batch_size=t.batch_size, shuffle_seed=derive_seed(t.seed, "ctr-shuffle", name, round_num))


def round_history(result: RoundsResult, names: list[str]) -> list[dict]:
    m = len(names)
    return [{"round": r + 1, "market": n, "valid_auc": float(a), "valid_logloss": float(ll),
             "train_loss": float(row[-1])}
            for r, row in enumerate(result.metrics) for n, a, ll in zip(names, row[:m], row[m:2 * m])]


@dataclass(frozen=True)
class _PartialRounds:
    """A built partial-FedAvg CTR run: one round of it, and each market's model from a snapshot."""

    market_set: MarketSet
    config: CTRStageConfig
    featurizers: dict[str, MarketFeatures]
    process: object  # partial_fedavg's process
    market_models: Callable  # partial_fedavg.MarketModels: one model per market, re-assigned, never rebuilt
    sgd_clients: DpSgdClients | None  # under --dp-unit interaction: the markets' DP-SGD record batches

    def pick(self, state, index: int):
        """Market `index`'s model: the round's shared weights and its own client state."""
        server, clients = state
        client = next(c for c in clients if int(c["client_index"]) == index)  # by index, never position
        return server.global_model_weights, client

    def models(self, snapshots) -> dict:
        return {name: self.market_models(name, *snapshots[i]) for i, name in enumerate(self.market_set.names)}

    def dataset(self, index: int, round_num: int) -> tf.data.Dataset:
        if self.sgd_clients:  # DP-SGD's Poisson record batches
            return self.sgd_clients.dataset(index, round_num, self.featurizers[self.market_set.names[index]])
        return federated_dataset(self.market_set, self.featurizers, self.config, round_num, index)

    def charge(self, ledger: Ledger | None, result: RoundsResult) -> None:
        """Charges `ledger` for every round each market took part in: DP-SGD's steps, or the DP mean's rounds."""
        names, config = self.market_set.names, self.config
        if self.sgd_clients and ledger is not None:
            self.sgd_clients.charge(ledger, (config.participation.present("ctr", r, len(names))
                                             for r in range(len(result.metrics))))
        else:
            charge_rounds(ledger, config, result, names, result.state[0].aggregator)

    def round(self, state, round_num: int):
        """One federated round among the markets present, then every market's validation."""
        names, config = self.market_set.names, self.config
        present = config.participation.present("ctr", round_num, len(names))
        server, clients, metrics = run_present(self.process.next, *state, lambda i: self.dataset(i, round_num), present)
        state = (server, clients)
        snapshots = [self.pick(state, i) for i in range(len(names))]
        valid = valid_row(self.models(snapshots), self.market_set, self.featurizers, config.train.data_seed)
        return state, round_row(valid, metrics["client_work"]["loss"] if metrics and "client_work" in metrics
                                else np.nan)


def build_partial(market_set: MarketSet, backbone: str, use: CodeUse, config: CTRStageConfig, k: tuple[int, int],
                  checkpoint: StageCheckpoint | None, ledger: Ledger | None,
                  vocabulary: tuple[int, int] | None = None) -> tuple[_PartialRounds, tuple]:
    """The audited process and every market's starting state, as (the run, its initial state). `vocabulary`:
    the ID tables' (users, items), the largest market's unless given (`fedmm bench` sizes them itself)."""
    users, items = vocabulary or market_set.largest_vocabulary
    # Sharing only code embeddings needs codes: without them (fedper) the interaction layers are shared.
    share_interaction = config.share_interaction or use.codes is None
    model_fn = model_fn_for(backbone, users, items, use.sizes(*k), config, share_interaction)
    featurizers = {name: use.featurizer(name) for name in market_set.names}
    sgd_clients = (DpSgdClients(market_set, config.privacy, ledger.stage if ledger else "ctr", config.train.seed,
                                dp.DP_SGD_CTR_LEARNING_RATE, config.train.neg_ratio, checkpoint)
                   if config.privacy.dp_sgd else None)

    spec = (sgd_clients.dataset(0, 0, featurizers[market_set.names[0]]) if sgd_clients
            else federated_dataset(market_set, featurizers, config, 0, 0)).element_spec
    pf_config = pf.PartialFedAvgConfig(client_learning_rate=config.train.learning_rate)
    aggregator = config.dp_mean(len(market_set.names), ledger)
    if sgd_clients:
        pf_config, aggregator = sgd_clients.client_config(pf_config), sgd_clients.aggregator()
    process = pf.build_partial_fedavg_process(model_fn, spec, pf_config, aggregator,
                                              seed=derive_seed(config.train.seed, "ctr-partial-server"),
                                              metrics_cross=not config.privacy.dp)
    audit_partial_fedavg(process, model_fn, "CTR stage", checkpoint)
    clients = [pf.initial_client_state(model_fn, pf_config, i, seed=derive_seed(config.train.seed, "ctr-partial", name))
               for i, name in enumerate(market_set.names)]
    rounds = _PartialRounds(market_set, config, featurizers, process, pf.MarketModels(model_fn), sgd_clients)
    return rounds, (process.initialize(), clients)


def train_partial(market_set: MarketSet, backbone: str, use: CodeUse, config: CTRStageConfig,
                  k: tuple[int, int], checkpoint: StageCheckpoint | None = None,
                  keep: Keep | None = None, ledger: Ledger | None = None) -> tuple[Metrics, list[dict]]:
    set_global_seed(config.train.seed, "ctr-partial")
    rounds, initial = build_partial(market_set, backbone, use, config, k, checkpoint, ledger)
    names = market_set.names
    selection = Selection(neg_logloss, rounds.pick, len(names), config.patience())
    result = run_rounds(initial, rounds.round, config.rounds, 2 * len(names) + 1, selection=selection,
                        checkpoint=checkpoint)
    rounds.charge(ledger, result)
    return (selected_test_metrics(rounds.models(result.best_state), market_set, rounds.featurizers,
                                  config.train.data_seed, keep),
            round_history(result, names))


def charge_rounds(ledger: Ledger | None, config: CTRStageConfig, result: RoundsResult, names: list[str],
            aggregator_state) -> None:
    if ledger is not None:
        ledger.record(config.privacy, aggregator_state, names,
                      (config.participation.present("ctr", r, len(names)) for r in range(len(result.metrics))))
