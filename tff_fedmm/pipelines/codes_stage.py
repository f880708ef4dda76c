"""Stage 2 of FedMM for a set of markets: codes from the codebook process, on the RQ-VAE rows of the
CF stage (`cf_stage`).

`federated=True` runs every market as a client of one codebook process (the global codebook is
aggregated across markets); `federated=False` runs the same process once per market with that market
as its sole client (both levels private: the `local+codes` and `fedmm-private-codebooks` codes).
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
from tff_fedmm.models.cf import CFConfig, rqvae_input_dim
from tff_fedmm.models.rqvae import RQVAEConfig
from tff_fedmm.pipelines.cf_stage import cf_inputs
from tff_fedmm.pipelines.privacy_audit import audit_codebook
from tff_fedmm.pipelines.privacy_report import Ledger
from tff_fedmm.pipelines.rounds import run_rounds
from tff_fedmm.seeding import set_global_seed


@dataclass(frozen=True)
class CodesConfig:
    cf: CFConfig = field(default_factory=CFConfig)
    codebook: CodebookStageConfig = field(default_factory=CodebookStageConfig)
    rounds: int = 20
    # `privacy` (DP, secure sum) applies to the federated global-codebook aggregation, DP also to the
    # optional federated CF tower (`cf_stage`). `participation` applies to both federated stages.
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
    charges: list[dict] = field(default_factory=list)  # DP charges of a federated codebook stage (JSON)
    quantizers: dict[str, MarketQuantizer] = field(default_factory=dict)  # what each market encoded with
    rqvae: RQVAEConfig = field(default_factory=RQVAEConfig)  # the RQ-VAE the quantizers belong to


@dataclass(frozen=True)
class _CodebookRounds:
    """A built codebook run: one round among the markets present, and its history row."""

    process: object  # codebook_process's process
    inputs: dict[str, np.ndarray]
    participants: list[str]
    participation: Participation
    seed: int
    slots: dict[str, np.ndarray] | None

    def dataset(self, index: int, round_num: int):
        name = self.participants[index]
        return rqvae_dataset(self.inputs[name], seed=self.seed + 1000 * round_num + index,
                             slots=self.slots[name] if self.slots is not None else None)

    def round(self, state, round_num: int):
        present = self.participation.present("codebook", round_num, len(self.participants))
        server, clients, metrics = run_present(self.process.next, *state, lambda i: self.dataset(i, round_num), present)
        row = [np.nan] * len(_HISTORY)
        if metrics is not None:
            row[-1] = metrics["finalizer"]["global_codes_updated"]
        if metrics is not None and "client_work" in metrics:
            work = metrics["client_work"]
            row[:3] = [work["loss"], work["reconstruction"], work["local_codes_used"]]
        progress.round_done(rqvae_loss=float(row[0]))
        return (server, clients), np.array(row, np.float64)


def build_codebook(config: CodesConfig, inputs: dict[str, np.ndarray], participants: list[str], process,
                    checkpoint: StageCheckpoint | None, federated: bool, privacy: dp.PrivacyConfig,
                    participation: Participation, ledger: Ledger,
                    slots: dict[str, np.ndarray] | None) -> tuple[_CodebookRounds, tuple]:
    """The audited process (built here unless given) and every participant's starting state, as (the run,
    its initial state)."""
    process = process or build_codebook_process(config.codebook, dp.codebook_aggregator(
        config.codebook.rule, privacy, participation.expected(len(participants)),
        dp.noise_seed(privacy, config.codebook.rqvae.seed, ledger.stage)),
        metrics_cross=not (federated and config.privacy.dp))  # under DP (either unit) no metric crosses
    audit_codebook(process, config.codebook, participants, federated, privacy, checkpoint)
    server = process.initialize()
    clients = [initial_client_state(config.codebook, i, server.global_model_weights, inputs[name])
               for i, name in enumerate(participants)]
    rounds = _CodebookRounds(process, inputs, participants, participation, config.codebook.rqvae.seed, slots)
    return rounds, (server, clients)


def _encode_markets(market_set: MarketSet, config: CodesConfig, inputs: dict[str, np.ndarray], participants: list[str],
                    server, clients) -> tuple[dict[str, MarketCodes], dict[str, MarketQuantizer]]:
    """Each participant's codes and quantizer: its private levels with the server's global codebook."""
    codes, quantizers, level1 = {}, {}, np.asarray(codebook_of(server.global_model_weights))
    for client in clients:
        name = participants[int(client["client_index"])]  # keyed by index, never by list position
        quantizers[name] = MarketQuantizer(tuple(np.asarray(w) for w in client["private"]), level1)
        codes[name] = encode_market(config.codebook.rqvae, quantizers[name], inputs[name],
                                    market_set.markets[name].num_users)
    return codes, quantizers


def run_codebook(market_set: MarketSet, inputs: dict[str, np.ndarray], config: CodesConfig,
                 participants: list[str], process=None, checkpoint: StageCheckpoint | None = None,
                 federated: bool = True, slots: dict[str, np.ndarray] | None = None,
                 ledger_stage: str = "codebook") -> CodesResult:
    """Trains the codebook process with `participants` as its clients and encodes each of them.

    With `federated`, the participants are sampled per round and the aggregation carries the privacy
    options of `config` (a market alone, as in the private code variants, shares nothing to protect).
    `slots` (anchored mode, `config.codebook.anchors` slots): each market's anchor slot per input row.
    Under DP the loss sums stay in the markets (the history's loss columns are NaN) and `ledger` is
    charged for every round each market took part in.
    """
    # The datasets' shuffle seeds combine with TensorFlow's global seed, which the stage before may
    # have left anywhere: without this, a variant's codes depended on which methods ran before it.
    set_global_seed(config.codebook.rqvae.seed, "codebook", *participants)
    participation = config.participation if federated else Participation()
    # Under --dp-unit interaction the rows are DP-SGD-trained CF tables: the codebook is post-processing.
    privacy = config.privacy.aggregation() if federated else dp.PrivacyConfig()
    ledger = Ledger(ledger_stage)
    rounds, initial = build_codebook(config, inputs, participants, process, checkpoint, federated, privacy,
                                      participation, ledger, slots)
    result = run_rounds(initial, rounds.round, config.rounds, len(_HISTORY), checkpoint=checkpoint)
    server, clients = result.best_state
    ledger.record(privacy, server.aggregator, participants,
                  (participation.present("codebook", r, len(participants)) for r in range(len(result.metrics))))
    codes, quantizers = _encode_markets(market_set, config, inputs, participants, server, clients)
    return CodesResult(codes=codes, history=_history_rows(result.metrics), charges=[c.to_json() for c in ledger.charges],
                       quantizers=quantizers, rqvae=config.codebook.rqvae)


_HISTORY = ("loss", "reconstruction", "local_codes_used", "global_codes_updated")


def _history_rows(metrics: np.ndarray) -> list[dict]:
    return [{"round": i + 1, **dict(zip(_HISTORY, row))} for i, row in enumerate(metrics)]


def anchored(market_set: MarketSet, config: CodesConfig,
              federated: bool) -> tuple[CodesConfig, dict[str, np.ndarray] | None]:
    """In anchored mode, `config` with the anchor slots and each market's slot per input row."""
    if not federated or config.anchors == "none":  # a market alone has no other market to anchor to
        return config, None
    split = public_anchors(market_set, config.data_seed, max_slots=config.anchor_max_slots)
    if not split.num_slots:
        return config, None
    config = replace(config, codebook=replace(config.codebook, anchors=split.num_slots))
    return config, {n: split.row_slots(n, m.num_users) for n, m in market_set.markets.items()}


def _group_codes(market_set: MarketSet, inputs: dict[str, np.ndarray], config: CodesConfig, group: list[str],
                 process, checkpoints: RunCheckpoints | None, federated: bool, slots: dict[str, np.ndarray] | None,
                 variant: str, ledger_stage: str | None) -> CodesResult:
    """One run of the codebook stage for `group`, or its outputs from a finished checkpoint."""
    stage = f"{variant}-{'-'.join(group)}"
    done = checkpoints.stage(stage).load_done() if checkpoints else None
    if done is not None:
        return _codes_from_arrays(done, group)
    progress.start_stage(stage, config.rounds)
    result = run_codebook(market_set, inputs, config, group, process,
                          checkpoints.stage(stage) if checkpoints else None, federated, slots,
                          ledger_stage=ledger_stage or f"codebook ({variant.removeprefix('codes-')} codes)")
    if checkpoints:
        checkpoints.stage(stage).save_done(_codes_arrays(result))
    return result


def learn_codes(market_set: MarketSet, config: CodesConfig, federated: bool, process=None,
                inputs: dict[str, np.ndarray] | None = None, checkpoints: RunCheckpoints | None = None,
                variant: str = "codes", ledger_stage: str | None = None) -> CodesResult:
    """`inputs` (from `cf_inputs`) may be passed in so that code variants share one CF stage. `variant`
    prefixes the checkpoint stages; `ledger_stage` names the DP charges (and seeds `--dp-noise-seed` noise),
    by default after `variant`."""
    inputs = inputs if inputs is not None else cf_inputs(market_set, config.cf)
    config, slots = anchored(market_set, config, federated)
    if not federated:  # one plain process serves every market alone (the federated one is built per run)
        process = process or build_codebook_process(config.codebook)
    groups = [market_set.names] if federated else [[name] for name in market_set.names]
    codes, history, charges, quantizers = {}, [], [], {}
    for group in groups:
        result = _group_codes(market_set, inputs, config, group, process, checkpoints, federated, slots, variant,
                              ledger_stage)
        codes.update(result.codes)
        quantizers.update(result.quantizers)
        history.extend(row if federated else {**row, "market": group[0]} for row in result.history)
        charges += result.charges
    return CodesResult(codes=codes, history=history, charges=charges, quantizers=quantizers,
                       rqvae=config.codebook.rqvae)


def _codes_arrays(result: CodesResult) -> dict[str, np.ndarray]:
    arrays = {f"{name}/{field}": getattr(c, field) for name, c in result.codes.items() for field in CODE_FIELDS}
    arrays["history"] = np.array([[row[k] for k in _HISTORY] for row in result.history], np.float64)
    arrays["charges"] = np.array(json.dumps(result.charges, sort_keys=True))
    for name, quantizer in result.quantizers.items():
        arrays[f"{name}/level1"] = quantizer.level1
        arrays.update({f"{name}/private/{i}": w for i, w in enumerate(quantizer.private)})
    return arrays


def _codes_from_arrays(arrays: dict[str, np.ndarray], group: list[str]) -> CodesResult:
    codes = {name: MarketCodes(*(arrays[f"{name}/{field}"] for field in CODE_FIELDS)) for name in group}
    history = _history_rows(arrays["history"])
    quantizers = {}
    for name in group:
        count = sum(key.startswith(f"{name}/private/") for key in arrays)
        quantizers[name] = MarketQuantizer(tuple(arrays[f"{name}/private/{i}"] for i in range(count)),
                                           arrays[f"{name}/level1"])
    return CodesResult(codes=codes, history=history, charges=json.loads(str(arrays["charges"])), quantizers=quantizers)
