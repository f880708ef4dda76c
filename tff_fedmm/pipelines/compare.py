"""Every method on the same markets, backbones, data and validation protocol.

Methods and what they share across markets:
    local              nothing (each market's CTR alone)
    local+codes        nothing; CTR with the market's own two-level codes
    fedavg             every CTR variable, IDs in one common table (TFF's build_weighted_fed_avg)
    fedper             the CTR's interaction layers; ID embeddings private
    centralized        the raw data: one model on the pooled markets (market-offset IDs, so ID rows are
                       not shared; interaction layers are); a non-private reference
    fedmm-private-codebooks  the CTR embeddings of level-1 code k (as fedmm), but k comes from each
                       market's own codebook: codes without a federated codebook
    fedmm-level1-only  the federated level-1 codebook and the CTR embeddings of its codes; the private
                       level has one code, so the CTR reads level 1 only
    fedmm              the level-1 (global) codebook and the CTR embeddings of level-1 codes; the local
                       codebook, ID and local-code embeddings stay private
(The FedMM variants keep their CTR interaction layers private, `CTRStageConfig.share_interaction`; with
`--cf-tower` they, and only they, also federate the CF stage's shared tower.)
    fedper-anchored    (opt-in) fedper + a shared embedding per public anchor item (`data.anchors`): items
                       in several markets, minus the held-out share, share a row by key; users, market-only
                       and held-out items stay private
    centralized-anchored (opt-in) centralized + the same shared embedding per anchor item: the pooled,
                       non-private reference with the access anchored mode has (market-offset item rows act
                       as each market's own adaptation of an anchor)

Several training seeds run one after another (or, with `jobs`, side by side in processes) on the same
markets and evaluation candidates (the data seed is part of the config and never varies); within a seed,
methods share their CF and codes stages.
Each seed's stages are checkpointed under their own names (`seed<S>-<stage>`), so a resumed multi-seed
run skips every stage any seed finished.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tff_fedmm import progress
from tff_fedmm.checkpoints import RunCheckpoints
from tff_fedmm.codes import MarketCodes
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.eval.evaluate import METRICS
from tff_fedmm.pipelines import ctr_fedavg, ctr_stage
from tff_fedmm.pipelines.code_variants import CODE_METHODS, CodeVariants
from tff_fedmm.pipelines.codes_stage import CodesConfig
from tff_fedmm.pipelines.compare_names import BACKBONES, METHODS  # noqa: F401  (re-exported)
from tff_fedmm.pipelines.ctr_centralized import train_centralized
from tff_fedmm.pipelines.exports import Exporter
from tff_fedmm.pipelines import privacy_report
from tff_fedmm.pipelines.privacy_report import Ledger
from tff_fedmm.pipelines.processes import map_in_processes
from tff_fedmm.pipelines.tuned import settings_for
from tff_fedmm.data.anchors import public_anchors

RESULT_COLUMNS = ["seed", "method", "backbone", "market", *METRICS, "alignment"]


@dataclass(frozen=True)
class CompareConfig:
    codes: CodesConfig = field(default_factory=CodesConfig)
    ctr: ctr_stage.CTRStageConfig = field(default_factory=ctr_stage.CTRStageConfig)
    # "method/backbone" -> CTR settings chosen on validation (`ctr_stage.with_settings`; an ablation without
    # an entry takes its parent's, `tuned.settings_for`); others use `ctr`.
    tuned: dict[str, dict[str, float]] = field(default_factory=dict)

    def for_method(self, method: str, backbone: str) -> CompareConfig:
        """This config with `ctr` as `method` trains it on `backbone`."""
        settings = settings_for(self.tuned, method, backbone)
        return replace(self, ctr=ctr_stage.with_settings(self.ctr, settings)) if settings else self


@dataclass
class CompareResult:
    results: pd.DataFrame  # RESULT_COLUMNS
    history: pd.DataFrame  # method, backbone, round, market, valid_auc, valid_logloss, train_loss
    codebooks: pd.DataFrame  # per code variant and market: usage, perplexity, collisions, alignment
    codebook_history: pd.DataFrame  # per code variant and round: loss, reconstruction, codes used
    # config.json's "privacy" (`privacy_report.section`); from one seed, its charges (method -> backbone -> JSON)
    privacy: dict = field(default_factory=dict)


def with_training_seed(config: CompareConfig, seed: int) -> CompareConfig:
    """`config` with every TRAINING seed (CF, codebook, participation, CTR) set to `seed`; the data seed,
    which fixes the evaluation candidates, is left as it is."""
    codes, ctr = config.codes, config.ctr
    codes = replace(codes, cf=replace(codes.cf, seed=seed),
                    codebook=replace(codes.codebook, rqvae=replace(codes.codebook.rqvae, seed=seed)),
                    participation=replace(codes.participation, seed=seed))
    ctr = replace(ctr, train=replace(ctr.train, seed=seed), participation=replace(ctr.participation, seed=seed))
    return replace(config, codes=codes, ctr=ctr)


@dataclass(frozen=True)
class _SeedCheckpoints:
    """One seed's view of a run's checkpoints: the same stages, named `seed<S>-<stage>`."""

    run: RunCheckpoints
    seed: int

    def stage(self, name: str):
        return self.run.stage(f"seed{self.seed}-{name}")


def _trainer(method: str, codes: CodeVariants, market_set: MarketSet, config: CompareConfig) -> Callable:
    """(backbone, round checkpoint, keep hook, DP ledger) -> (metrics per market, validation history) for
    `method`; its federated CTR stage charges the ledger."""
    c = config.ctr
    if method == "local":
        return lambda b, _, keep, __: ctr_stage.train_local(market_set, b, ctr_stage.CodeUse(), c, (0, 0), keep)
    if method == "fedavg":
        return lambda b, ckpt, keep, ledger: ctr_fedavg.train_fedavg(market_set, b, c, ckpt, keep, ledger)
    if method == "fedper":
        return lambda b, ckpt, keep, ledger: ctr_stage.train_partial(market_set, b, ctr_stage.CodeUse(), c, (0, 0),
                                                                     ckpt, keep, ledger)
    if method == "centralized":
        return lambda b, _, keep, __: train_centralized(market_set, b, c, keep=keep)
    if method in ("fedper-anchored", "centralized-anchored"):
        split = public_anchors(market_set, config.codes.data_seed, max_slots=config.codes.anchor_max_slots)
        use = ctr_stage.CodeUse(anchor_fields(market_set, split), use_global=True, use_local=False)
        k = (split.num_slots + 1, 0)
        if method == "centralized-anchored":
            return lambda b, _, keep, __: train_centralized(market_set, b, c, use, k, keep)
        shared = replace(c, share_interaction=True)  # as fedper
        return lambda b, ckpt, keep, ledger: ctr_stage.train_partial(market_set, b, use, shared, k, ckpt, keep, ledger)
    variant, reads = codes.variant(method), CODE_METHODS[method]

    def train(backbone: str, ckpt, keep, ledger: Ledger):
        use = ctr_stage.CodeUse(codes.get(variant).codes, reads.use_global, reads.use_local)
        if method == "local+codes":
            return ctr_stage.train_local(market_set, backbone, use, c, codes.k(variant), keep)
        return ctr_stage.train_partial(market_set, backbone, use, c, codes.k(variant), ckpt, keep, ledger)

    return train


def run_compare(market_set: MarketSet, methods: list[str], backbones: list[str], config: CompareConfig,
                checkpoints: RunCheckpoints | None = None, seeds: list[int] | None = None,
                jobs: int = 1, exports: Path | None = None) -> CompareResult:
    """Every method × backbone for each training seed in `seeds` (default: the config's own seed); every
    table gains a `seed` column; `privacy` is the run's privacy section (`privacy_report.section`). With
    `jobs` > 1, up to that many seeds run at once, each in its own process (`pipelines.processes`).
    `exports` (a run folder): the first seed exports its models, codes and codebooks there
    (`pipelines.exports`)."""
    seeds = [config.ctr.train.seed] if seeds is None else list(seeds)
    calls = [(market_set, methods, backbones, with_training_seed(config, seed),
              _SeedCheckpoints(checkpoints, seed) if checkpoints else None,
              Exporter(exports, market_set, seed) if exports is not None and seed == seeds[0] else None)
             for seed in seeds]
    if jobs > 1 and len(seeds) > 1:
        per_seed = len(methods) * len(backbones)
        parts = map_in_processes(_run_seed_quietly, calls, jobs,
                                 on_done=lambda: [progress.stage_done() for _ in range(per_seed)])
    else:
        parts = [_run_seed(*call) for call in calls]

    def stacked(name: str) -> pd.DataFrame:
        frames = [getattr(p, name).assign(seed=s) for s, p in zip(seeds, parts) if len(getattr(p, name))]
        if not frames:
            return getattr(parts[0], name) if parts else pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True)
        return frame[["seed", *[c for c in frame.columns if c != "seed"]]]

    privacy = privacy_report.section(config.codes.privacy, [p.privacy for p in parts], methods, market_set.names)
    results = stacked("results") if parts else pd.DataFrame(columns=RESULT_COLUMNS)
    return CompareResult(results=results.reindex(columns=RESULT_COLUMNS), history=stacked("history"),
                         codebooks=stacked("codebooks"), codebook_history=stacked("codebook_history"),
                         privacy=privacy)


def _run_seed_quietly(*args) -> CompareResult:
    """`_run_seed` in a process of its own: warnings to stderr as in the CLI, no progress bars."""
    logging.basicConfig(level=logging.WARNING, format="fedmm: %(levelname)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # as `cli.main`: retracing notices
    return _run_seed(*args)


def _run_seed(market_set: MarketSet, methods: list[str], backbones: list[str], config: CompareConfig,
              checkpoints: _SeedCheckpoints | None, exporter: Exporter | None = None) -> CompareResult:
    codes = CodeVariants(market_set, config.codes, checkpoints)
    rows, history, charges = [], [], {}
    if exporter:
        exporter.write_ids()
    for method in methods:
        for backbone in backbones:
            train = _trainer(method, codes, market_set, config.for_method(method, backbone))
            stage = checkpoints.stage(f"ctr-{method}-{backbone}") if checkpoints else None
            done = stage.load_done() if stage else None
            if done is None:
                if method in CODE_METHODS:  # learn codes before the CTR bar starts, under their own bars
                    codes.get(codes.variant(method))
                per_market = method in ("local", "local+codes")  # Keras trains market after market
                progress.start_stage(f"{method} / {backbone}",
                                     config.ctr.rounds * (len(market_set.names) if per_market else 1))
                ledger = Ledger(f"ctr ({method}/{backbone})")
                metrics, hist = train(backbone, stage, exporter.keeper(method, backbone) if exporter else None, ledger)
                if exporter and method in CODE_METHODS:
                    codes.export(exporter, method)
                ctr_charges = [c.to_json() for c in ledger.charges]
                if stage:
                    stage.save_done(_stage_arrays(metrics, hist, market_set.names, ctr_charges))
            else:
                metrics, hist, ctr_charges = _stage_from_arrays(done, market_set.names)
            upstream = codes.charges(codes.variant(method)) if method in CODE_METHODS else []
            charges.setdefault(method, {})[backbone] = upstream + ctr_charges
            alignment = _alignment_by_market(codes, method)
            rows.extend({"method": method, "backbone": backbone, "market": name, **m,
                         "alignment": alignment.get(name, np.nan)} for name, m in metrics.items())
            history.extend({"method": method, "backbone": backbone, **h} for h in hist)
            progress.stage_done()
    reports, code_history = codes.reports()
    return CompareResult(results=pd.DataFrame(rows, columns=RESULT_COLUMNS[1:]), history=pd.DataFrame(history),
                         codebooks=reports, codebook_history=code_history, privacy=charges)


def _stage_arrays(metrics: dict, history: list[dict], names: list[str], charges: list[dict]) -> dict[str, np.ndarray]:
    """A finished stage as arrays; history markets by index (-1: all markets pooled); its DP charges."""
    index = {n: i for i, n in enumerate(names)}
    return {"metrics": np.array([[metrics[n][k] for k in METRICS] for n in names], np.float64),
            "history": np.array([[h["round"], index.get(h["market"], -1), h["valid_auc"], h["valid_logloss"],
                                  h["train_loss"]] for h in history], np.float64).reshape(-1, 5),
            "charges": np.array(json.dumps(charges))}


def _stage_from_arrays(arrays: dict, names: list[str]) -> tuple[dict, list[dict], list[dict]]:
    metrics = {n: dict(zip(METRICS, map(float, row))) for n, row in zip(names, arrays["metrics"])}
    history = [{"round": int(r), "market": names[int(m)] if m >= 0 else "all", "valid_auc": float(a),
                "valid_logloss": float(ll), "train_loss": float(loss)} for r, m, a, ll, loss in arrays["history"]]
    return metrics, history, json.loads(str(arrays["charges"]))


def anchor_fields(market_set: MarketSet, split) -> dict[str, MarketCodes]:
    """The anchored baselines' extra field, carried in the global-code slot of the CTR model (a `shared_*`
    embedding, so partial FedAvg averages it): an item's anchor slot + 1, 0 for every other item and for
    users. Row s + 1 of that table is then one embedding per anchor, shared across markets by key."""
    fields = {}
    for name, market in market_set.markets.items():
        users, items = np.zeros(market.num_users, np.int32), (split.item_slot[name] + 1).astype(np.int32)
        fields[name] = MarketCodes(user_global=users, user_local=users, item_global=items,
                                   item_local=np.zeros_like(items), errors=np.zeros(3))
    return fields


def _alignment_by_market(codes: CodeVariants, method: str) -> dict[str, float]:
    if method not in CODE_METHODS:
        return {}
    report = codes.report(codes.variant(method))
    return dict(zip(report["market"], report["alignment"]))
