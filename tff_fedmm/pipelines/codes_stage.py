"""Stage 1–2 of FedMM for a set of markets: CF embeddings, then codes from the codebook process.

`federated=True` runs every market as a client of one codebook process (the global codebook is
aggregated across markets); `federated=False` runs the same process once per market with that market
as its sole client (both levels private: the `local+codes` and `fedmm-local-only` codes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np

from tff_fedmm import progress
from tff_fedmm.checkpoints import RunCheckpoints, StageCheckpoint
from tff_fedmm.codes import FIELDS as CODE_FIELDS
from tff_fedmm.codes import MarketCodes, MarketQuantizer, encode_market
from tff_fedmm.data.anchors import ANCHOR_MODES, public_anchors
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.federated import privacy as dp
from tff_fedmm.federated.codebook_process import (
    CodebookStageConfig, build_codebook_process, codebook_of, initial_client_state, rqvae_dataset,
)
from tff_fedmm.federated.participation import Participation, run_present
from tff_fedmm.data.descriptors import entity_descriptors
from tff_fedmm.models.cf import CFConfig, build_cf_model, embedding_tables, rqvae_input_dim, rqvae_inputs
from tff_fedmm.models.rqvae import RQVAEConfig
from tff_fedmm.pipelines.privacy_audit import audit_codebook, audit_partial_fedavg
from tff_fedmm.pipelines.rounds import run_rounds
from tff_fedmm.seeding import derive_seed, set_global_seed
from tff_fedmm.training.cf import train_cf


@dataclass(frozen=True)
class CodesConfig:
    cf: CFConfig = field(default_factory=CFConfig)
    codebook: CodebookStageConfig = field(default_factory=CodebookStageConfig)
    rounds: int = 20
    # `privacy` (DP, secure sum) applies to the federated global-codebook aggregation only; the optional
    # CF tower is averaged without it (issue #13). `participation` applies to both federated stages.
    privacy: dp.PrivacyConfig = field(default_factory=dp.PrivacyConfig)
    participation: Participation = field(default_factory=Participation)
    # Anchored mode (`data.anchors`): "public-items" lets the federated codebook stage use the public keys
    # of items in two or more markets; the split of anchors and held-out items comes from `data_seed`.
    anchors: str = "none"
    data_seed: int = 0
    anchor_max_slots: int | None = None  # hash anchors into this many slots when there are more

    def __post_init__(self) -> None:
        rq = self.codebook.rqvae
        if rq.input_dim != rqvae_input_dim(self.cf):
            raise ValueError(f"RQ-VAE input_dim {rq.input_dim} does not match the CF stage's rows "
                             f"({rqvae_input_dim(self.cf)}); build both with the same descriptors setting")
        if rq.descriptor_dim not in (0, rqvae_input_dim(self.cf) - self.cf.dim - 2):
            raise ValueError(f"RQ-VAE descriptor_dim {rq.descriptor_dim} but the CF stage appends "
                             f"{rqvae_input_dim(self.cf) - self.cf.dim - 2} descriptor columns")
        if self.anchors not in ANCHOR_MODES:
            raise ValueError(f"unknown anchors mode {self.anchors!r}; expected one of {ANCHOR_MODES}")
        if self.anchors != "none" and rq.descriptor_dim:
            raise ValueError("anchored mode pulls the encoder's level-1 latents; with level 1 read from "
                             "descriptors (a frozen map) there is nothing to pull: use level1 encoder")


LEVEL1_SOURCES = ("encoder", "descriptors")


def with_level1(config: CodesConfig, level1: str) -> CodesConfig:
    """`config` with level 1 read from the private encoder (`encoder`, the original design) or from
    the market-invariant descriptors (`descriptors`: appended to the input, and level 1 quantizes their
    frozen anchor map; see `models.rqvae.build_rqvae`). Both are strict: nothing new leaves a market."""
    if level1 not in LEVEL1_SOURCES:
        raise ValueError(f"unknown level-1 source {level1!r}; expected one of {LEVEL1_SOURCES}")
    cf = replace(config.cf, descriptors=1.0 if level1 == "descriptors" else 0.0)
    width = rqvae_input_dim(cf)
    rq = replace(config.codebook.rqvae, input_dim=width, descriptor_dim=width - cf.dim - 2 if cf.descriptors else 0)
    return replace(config, cf=cf, codebook=replace(config.codebook, rqvae=rq))


@dataclass
class CodesResult:
    codes: dict[str, MarketCodes]
    history: list[dict]  # one row per round: round, loss, reconstruction, codes used
    privacy: dict = field(default_factory=dict)  # `privacy.report` of a federated codebook stage
    quantizers: dict[str, MarketQuantizer] = field(default_factory=dict)  # what each market encoded with
    rqvae: RQVAEConfig = field(default_factory=RQVAEConfig)  # the RQ-VAE the quantizers belong to


def cf_tables(market_set: MarketSet, config: CFConfig, checkpoints: RunCheckpoints | None = None,
              federated: bool = False, participation: Participation | None = None,
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each market's CF embedding tables (users, items), checkpointed as a stage: a run exports them, and
    the RQ-VAE rows (`cf_inputs`) are computed from them.

    `federated` (with `config.tower`) trains the CF models together: the `shared_tower_*` layers are
    averaged across markets by partial FedAvg while every market's embeddings stay private, so all
    markets' embeddings are read by one function (`participation` picks each round's markets).
    Otherwise each market trains alone.
    """
    name = ("cf-federated" if federated and config.tower else "cf") + ("-descriptors" if config.descriptors > 0 else "")
    stage = checkpoints.stage(name) if checkpoints else None
    done = stage.load_done() if stage else None
    if done is None:
        progress.start_stage(name, config.epochs if name.startswith("cf-federated") else 0)
        tables = (_federated_cf_tables(market_set, config, stage, participation or Participation())
                  if name.startswith("cf-federated") else
                  {n: embedding_tables(train_cf(m, config)) for n, m in market_set.markets.items()})
        done = {f"{n}/{entity}": table for n, pair in tables.items() for entity, table in zip(ENTITIES, pair)}
        if stage:
            stage.save_done(done)
    return {n: (done[f"{n}/users"], done[f"{n}/items"]) for n in market_set.names}


ENTITIES = ("users", "items")


def cf_inputs(market_set: MarketSet, config: CFConfig, checkpoints: RunCheckpoints | None = None,
              federated: bool = False, participation: Participation | None = None,
              tables: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Each market's RQ-VAE input rows (users then items), from its CF tables (`tables`, or `cf_tables`)."""
    tables = tables or cf_tables(market_set, config, checkpoints, federated, participation)
    return {n: rqvae_inputs(*t, descriptors=entity_descriptors(market_set.markets[n]) if config.descriptors > 0
                            else None, weight=config.descriptors) for n, t in tables.items()}


def _federated_cf_tables(market_set: MarketSet, config: CFConfig, checkpoint: StageCheckpoint | None,
                         participation: Participation) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from tff_fedmm.data.pipelines import to_dataset
    from tff_fedmm.data.sampling import ctr_examples
    from tff_fedmm.federated import partial_fedavg as pf

    names = market_set.names
    users, items = market_set.largest_vocabulary
    model_fn = lambda: build_cf_model(users, items, config)  # noqa: E731

    def dataset(index: int, round_num: int):
        return to_dataset(ctr_examples(market_set.markets[names[index]], "train", neg_ratio=config.neg_ratio,
                                       seed=config.seed, epoch=round_num),
                          batch_size=config.batch_size,
                          shuffle_seed=derive_seed(config.seed, "cf-shuffle", names[index], round_num))

    set_global_seed(config.seed, "cf-federated")
    pf_config = pf.PartialFedAvgConfig(client_learning_rate=config.learning_rate)
    process = pf.build_partial_fedavg_process(model_fn, dataset(0, 0).element_spec, pf_config,
                                              seed=derive_seed(config.seed, "cf-federated-server"))
    audit_partial_fedavg(process, model_fn, "CF stage, shared tower", checkpoint)
    clients = [pf.initial_client_state(model_fn, pf_config, i, seed=derive_seed(config.seed, "cf-federated", name))
               for i, name in enumerate(names)]

    def step(state, round_num: int):
        present = participation.present("cf-federated", round_num, len(names))
        server, clients, metrics = run_present(process.next, state[0], state[1],
                                               lambda i: dataset(i, round_num), present)
        loss = float(metrics["client_work"]["loss"]) if metrics else float("nan")
        progress.round_done(cf_loss=loss)
        return (server, clients), np.array([loss])

    server, clients = run_rounds((process.initialize(), clients), step, config.epochs, 1,
                                 checkpoint=checkpoint).best_state
    tables = {}
    for client in clients:
        name = names[int(client["client_index"])]
        user_table, item_table = embedding_tables(pf.market_model(model_fn, server.global_model_weights, client))
        market = market_set.markets[name]
        tables[name] = (user_table[: market.num_users], item_table[: market.num_items])
    return tables


def run_codebook(market_set: MarketSet, inputs: dict[str, np.ndarray], config: CodesConfig,
                 participants: list[str], process=None, checkpoint: StageCheckpoint | None = None,
                 federated: bool = True, slots: dict[str, np.ndarray] | None = None) -> CodesResult:
    """Trains the codebook process with `participants` as its clients and encodes each of them.

    With `federated`, the participants are sampled per round and the aggregation carries the privacy
    options of `config` (a market alone, as in the private code variants, shares nothing to protect).
    `slots` (anchored mode, `config.codebook.anchors` slots): each market's anchor slot per input row.
    """
    # The datasets' shuffle seeds combine with TensorFlow's global seed, which the stage before may
    # have left anywhere: without this, a variant's codes depended on which methods ran before it.
    set_global_seed(config.codebook.rqvae.seed, "codebook", *participants)
    participation = config.participation if federated else Participation()
    privacy = config.privacy if federated else dp.PrivacyConfig()
    process = process or build_codebook_process(config.codebook, dp.codebook_aggregator(
        config.codebook.rule, privacy, participation.expected(len(participants)),
        dp.noise_seed(privacy, config.codebook.rqvae.seed)))
    audit_codebook(process, config.codebook, participants, federated, privacy, checkpoint)
    server = process.initialize()
    clients = [initial_client_state(config.codebook, i, server.global_model_weights, inputs[name])
               for i, name in enumerate(participants)]

    def dataset(index: int, round_num: int):
        name = participants[index]
        return rqvae_dataset(inputs[name], seed=config.codebook.rqvae.seed + 1000 * round_num + index,
                             slots=slots[name] if slots is not None else None)

    def step(state, round_num: int):
        present = participation.present("codebook", round_num, len(participants))
        server, clients, metrics = run_present(process.next, *state, lambda i: dataset(i, round_num), present)
        if metrics is None:
            row = [np.nan] * len(_HISTORY)
        else:
            work = metrics["client_work"]
            row = [work["loss"], work["reconstruction"], work["local_codes_used"],
                   metrics["finalizer"]["global_codes_updated"]]
        progress.round_done(rqvae_loss=float(row[0]))
        return (server, clients), np.array(row, np.float64)

    result = run_rounds((server, clients), step, config.rounds, len(_HISTORY), checkpoint=checkpoint)
    server, clients = result.best_state
    rounds_run = int(np.isfinite(result.metrics[:, 0]).sum())
    report = dp.report(privacy, dp.round_event(server.aggregator) if privacy.dp and rounds_run else None,
                       rounds_run)
    codes, quantizers, level1 = {}, {}, np.asarray(codebook_of(server.global_model_weights))
    for client in clients:
        name = participants[int(client["client_index"])]  # keyed by index, never by list position
        quantizers[name] = MarketQuantizer(tuple(np.asarray(w) for w in client["private"]), level1)
        codes[name] = encode_market(config.codebook.rqvae, quantizers[name], inputs[name],
                                    market_set.markets[name].num_users)
    history = [{"round": i + 1, **dict(zip(_HISTORY, row))} for i, row in enumerate(result.metrics)]
    return CodesResult(codes=codes, history=history, privacy=report, quantizers=quantizers, rqvae=config.codebook.rqvae)


_HISTORY = ("loss", "reconstruction", "local_codes_used", "global_codes_updated")


def learn_codes(market_set: MarketSet, config: CodesConfig, federated: bool, process=None,
                inputs: dict[str, np.ndarray] | None = None, checkpoints: RunCheckpoints | None = None,
                variant: str = "codes") -> CodesResult:
    """`inputs` (from `cf_inputs`) may be passed in so that code variants share one CF stage."""
    inputs = inputs if inputs is not None else cf_inputs(market_set, config.cf)
    slots = None
    if federated and config.anchors != "none":  # a market alone has no other market to anchor to
        split = public_anchors(market_set, config.data_seed, max_slots=config.anchor_max_slots)
        if split.num_slots:
            config = replace(config, codebook=replace(config.codebook, anchors=split.num_slots))
            slots = {n: split.row_slots(n, m.num_users) for n, m in market_set.markets.items()}
    if not federated:  # one plain process serves every market alone (the federated one is built per run)
        process = process or build_codebook_process(config.codebook)
    groups = [market_set.names] if federated else [[name] for name in market_set.names]
    codes, history, privacy, quantizers = {}, [], {}, {}
    for group in groups:
        stage = f"{variant}-{'-'.join(group)}"
        done = checkpoints.stage(stage).load_done() if checkpoints else None
        if done is None:
            progress.start_stage(stage, config.rounds)
            result = run_codebook(market_set, inputs, config, group, process,
                                  checkpoints.stage(stage) if checkpoints else None, federated, slots)
            if checkpoints:
                checkpoints.stage(stage).save_done(_codes_arrays(result))
        else:
            result = _codes_from_arrays(done, group)
        codes.update(result.codes)
        quantizers.update(result.quantizers)
        history.extend(row if federated else {**row, "market": group[0]} for row in result.history)
        privacy = result.privacy if federated else privacy
    return CodesResult(codes=codes, history=history, privacy=privacy, quantizers=quantizers,
                       rqvae=config.codebook.rqvae)


def _codes_arrays(result: CodesResult) -> dict[str, np.ndarray]:
    arrays = {f"{name}/{field}": getattr(c, field) for name, c in result.codes.items() for field in CODE_FIELDS}
    arrays["history"] = np.array([[row[k] for k in _HISTORY] for row in result.history], np.float64)
    arrays["privacy"] = np.array(json.dumps(result.privacy, sort_keys=True))
    for name, quantizer in result.quantizers.items():
        arrays[f"{name}/level1"] = quantizer.level1
        arrays.update({f"{name}/private/{i}": w for i, w in enumerate(quantizer.private)})
    return arrays


def _codes_from_arrays(arrays: dict[str, np.ndarray], group: list[str]) -> CodesResult:
    codes = {name: MarketCodes(*(arrays[f"{name}/{field}"] for field in CODE_FIELDS)) for name in group}
    history = [{"round": i + 1, **dict(zip(_HISTORY, row))} for i, row in enumerate(arrays["history"])]
    quantizers = {}
    for name in group:
        count = sum(key.startswith(f"{name}/private/") for key in arrays)
        quantizers[name] = MarketQuantizer(tuple(arrays[f"{name}/private/{i}"] for i in range(count)),
                                           arrays[f"{name}/level1"])
    return CodesResult(codes=codes, history=history, privacy=json.loads(str(arrays["privacy"])), quantizers=quantizers)
