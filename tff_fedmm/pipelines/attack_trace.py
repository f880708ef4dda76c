"""What the adversaries of `federated.privacy_attack` observe, recorded from a real codebook stage.

The stage runs as `fedmm` runs it (`codes_stage.run_codebook`: the same process, aggregator, privacy
options, datasets and seeds), every market taking part in every round, and this records:
- every broadcast global codebook (adversary (a));
- with `record_markets`, each market's raw codebook update per round (adversary (b) when updates
  reach the server one by one). TFF gives no handle on a value inside a round, so each market's
  update is recomputed by a plain process (no DP, no secure sum) run on that market alone from the
  same server state, client state and dataset: a market's round is deterministic, and a mean of one
  update is that update (`tests/test_privacy_attack.py` checks the weighted mean of the recomputed
  updates against the joint round);
- the ground truth only the evaluator sees: the level-1 code of each of a market's rows (users, then
  items) when it joins (its data
  through the shared initial encoder, against the initial codebook). Not at the end: the final codes
  depend on the released noise too (codes the noise pushed away from the data end up holding nothing),
  so heavy noise alone would let the broadcast predict them (measured: AUC well below 0.5); the codes
  at the start are a function of the market's data and public initial weights only, which is what DP
  is meant to hide.
- in anchored mode (`slots` given, `config.codebook.anchors` slots), what the membership adversaries
  observe (`anchor_trace`): the released per-slot aggregates, each market's anchor payload, and which
  slots each market carries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from tff_fedmm.codes import MarketQuantizer, quantizer_model
from tff_fedmm.federated import accounting
from tff_fedmm.federated import privacy as dp
from tff_fedmm.federated import privacy_attack as pa
from tff_fedmm.federated.codebook_aggregator import GlobalCodebookFactory
from tff_fedmm.federated.codebook_process import (
    build_codebook_process, codebook_of, initial_client_state, rqvae_dataset,
)
from tff_fedmm.pipelines import anchor_trace as at
from tff_fedmm.pipelines.codes_stage import CodesConfig
from tff_fedmm.pipelines.privacy_report import Ledger
from tff_fedmm.seeding import set_global_seed
from tff_fedmm.training.rqvae import encode_codes


@dataclass(frozen=True)
class AttackTrace:
    codebooks: np.ndarray  # [rounds + 1, K, d]: broadcast before each round, and after the last
    market_updates: dict[str, np.ndarray] | None  # market → [rounds, K, d] raw updates; None: not recorded
    weights: dict[str, float]  # market → its weight in a mean without DP (RQ-VAE rows)
    row_codes: dict[str, np.ndarray]  # market → level-1 code per RQ-VAE row at the start (evaluator only)
    epsilon: float | None  # of the codebook stage per market (all take part) at the privacy's delta
    anchors: at.AnchorTrace | None = None  # anchored mode only


def record_trace(inputs: dict[str, np.ndarray], config: CodesConfig, record_markets: bool,
                 slots: dict[str, np.ndarray] | None = None) -> AttackTrace:
    """Runs the federated codebook stage of `config` (its privacy options included) with every market of
    `inputs` (market → its RQ-VAE input rows, `codes_stage.cf_inputs`) as a client; `slots` (anchored
    mode, `codes_stage.anchored`): each market's anchor slot per row."""
    names = list(inputs)
    stage = config.codebook
    set_global_seed(stage.rqvae.seed, "codebook", *names)
    privacy = config.privacy
    ledger = Ledger("codebook")
    anchored = slots is not None and stage.anchors > 0
    wrap = at.ReleasedAggregate if anchored else (lambda factory: factory)
    process = build_codebook_process(stage, wrap(dp.codebook_aggregator(
        stage.rule, privacy, float(len(names)), dp.noise_seed(privacy, stage.rqvae.seed, ledger.stage))),
        metrics_cross=not privacy.dp)
    plain = build_codebook_process(stage, wrap(GlobalCodebookFactory(stage.rule))) if record_markets else None
    server = process.initialize()
    clients = [initial_client_state(stage, i, server.global_model_weights, inputs[n]) for i, n in enumerate(names)]
    codebooks = [np.asarray(codebook_of(server.global_model_weights))]
    row_codes = {}
    for i, name in enumerate(names):
        quantizer = MarketQuantizer(tuple(np.asarray(w) for w in clients[i]["private"]), codebooks[0])
        row_codes[name] = encode_codes(quantizer_model(stage.rqvae, quantizer), inputs[name])[0]
    updates: dict[str, list[np.ndarray]] = {n: [] for n in names}
    payloads: dict[str, list[dict]] = {n: [] for n in names}
    released: list[np.ndarray] = []
    for round_num in range(config.rounds):
        datasets = [rqvae_dataset(inputs[n], seed=stage.rqvae.seed + 1000 * round_num + i,
                                  slots=slots[n] if anchored else None) for i, n in enumerate(names)]
        if plain is not None:
            start = plain.initialize()._replace(global_model_weights=server.global_model_weights)
            for i, name in enumerate(names):
                alone, _, alone_metrics = plain.next(start, [clients[i]], [datasets[i]])
                updates[name].append(np.asarray(codebook_of(alone.global_model_weights)) - codebooks[-1])
                if anchored:
                    payloads[name].append(at.released(alone_metrics))
        server, returned, metrics = process.next(server, clients, datasets)
        for state in returned:  # keyed by client_index, never by position
            clients[int(state["client_index"])] = state
        codebooks.append(np.asarray(codebook_of(server.global_model_weights)))
        if anchored:
            released.append(at.released(metrics)["anchor_counts"])
    ledger.record(privacy, server.aggregator, names, [range(len(names))] * config.rounds)
    epsilon = accounting.epsilon(ledger.charges, names[0], accounting.MARKET, privacy.delta) if privacy.dp else None
    market_updates = {n: np.stack(u) for n, u in updates.items()} if plain is not None else None
    anchors = None
    if anchored:
        market_payloads = None if market_updates is None else {
            n: {"codebook_update": market_updates[n],
                **{field: np.stack([p[field] for p in payloads[n]]) for field in payloads[n][0]}}
            for n in names}
        anchors = at.AnchorTrace(carries=at.carries_of({n: slots[n] for n in names}, stage.anchors),
                                 released_counts=np.stack(released), market_payloads=market_payloads)
    return AttackTrace(codebooks=np.stack(codebooks), market_updates=market_updates,
                       weights={n: float(len(inputs[n])) for n in names}, row_codes=row_codes, epsilon=epsilon,
                       anchors=anchors)


@dataclass(frozen=True)
class Protection:
    """One row of the attack table: a name and the privacy options of the codebook stage."""

    name: str
    privacy: dp.PrivacyConfig

    @property
    def view(self) -> str:
        """What the server receives under this protection (`privacy_attack.VIEWS`)."""
        return pa.view_kind(self.privacy.dp, self.privacy.secure_agg, distributed=self.privacy.mode == dp.DISTRIBUTED)


def protections(noise: list[float], clip: float, delta: float, secure_noise: list[float],
                distributed_noise: list[float]) -> list[Protection]:
    """No protection, secure summation, central DP at each of `noise` (fixed L2 `clip`), central DP with
    secure summation at each of `secure_noise`, and distributed DP at each of `distributed_noise`. Central
    DP noise is reproducible (`noise_seed`) so the table can be regenerated, with the law of secret noise;
    distributed DP's noise is each market's own and cannot be seeded."""
    def central(z: float, secure: bool) -> Protection:
        return Protection(f"central DP z={z:g}" + (" + secure agg" if secure else ""),
                          dp.PrivacyConfig(noise_multiplier=z, clip=clip, delta=delta, secure_agg=secure, noise_seed=0))

    def distributed(z: float) -> Protection:
        return Protection(f"distributed DP z={z:g}",
                          dp.PrivacyConfig(noise_multiplier=z, clip=clip, delta=delta, mode=dp.DISTRIBUTED))

    return [Protection("none", dp.PrivacyConfig()), Protection("secure agg", dp.PrivacyConfig(secure_agg=True)),
            *(central(z, False) for z in noise), *(central(z, True) for z in secure_noise),
            *(distributed(z) for z in distributed_noise)]


def measure(inputs: dict[str, np.ndarray], config: CodesConfig, protection: Protection,
            slots: dict[str, np.ndarray] | None = None) -> dict:
    """One run of the codebook stage under `protection` (anchored with `slots`), attacked (`summarize`),
    with its wall time."""
    started = time.monotonic()
    trace = record_trace(inputs, replace(config, privacy=protection.privacy),
                         record_markets=protection.view != pa.RELEASED_SUM, slots=slots)
    return {**summarize(trace, protection), "seconds": round(time.monotonic() - started, 1)}


def summarize(trace: AttackTrace, protection: Protection) -> dict:
    """Both adversaries against every market of `trace`: the means over target markets of their recovery
    rates and AUCs and of the chance rate, and the largest chance standard deviation of one target (a
    bound on that of the mean); in anchored mode also the membership attack (`anchor_trace`)."""
    updates, clip = trace.market_updates, protection.privacy.clip
    if trace.anchors is not None and trace.anchors.market_payloads is not None and clip is not None:
        # DP clips a market's whole payload, anchor fields included: scale its update by that factor.
        payloads = trace.anchors.market_payloads
        updates = {n: u * pa.payload_scales(payloads[n], clip)[:, None, None] for n, u in updates.items()}
        clip = None
    rows = pa.attack_targets(trace.codebooks, updates, trace.row_codes, protection.view, clip)
    mean = {key: float(np.mean([r[key] for r in rows]))
            for key in ("recovery_a", "auc_a", "recovery_b", "auc_b", "chance", "codes")}
    anchored = {} if trace.anchors is None else at.summarize_anchors(trace.anchors, protection.view,
                                                                     protection.privacy.clip)
    return {"protection": protection.name, "noise_multiplier": protection.privacy.noise_multiplier or 0.0,
            "epsilon": float("inf") if trace.epsilon is None else trace.epsilon, "server_view": protection.view,
            **mean, "chance_std": max(r["chance_std"] for r in rows), **anchored}
