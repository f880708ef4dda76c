"""The code variants a comparison's methods read, each learned at most once per seed.

A variant says two things, both fixed before anything trains: how its codebooks were shared (`private`:
each market's own, both levels; `federated`: FedMM's federated level 1 and private level 2;
`federated-level1`: the federated level 1 with a one-code private level, so one effective level) and which
CF stage its RQ-VAE rows come from (`local`: each market alone; `federated`: the shared CF tower of
`--cf-tower`). Its label names both, e.g. `federated-codebooks-local-cf` (the `codes` column of
codebooks.csv, and the codes stages' checkpoints).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from tff_fedmm.data.anchors import held_out_pairs, public_anchors
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.pipelines.codebook_report import codebook_report
from tff_fedmm.pipelines.cf_stage import CFTables, cf_inputs, cf_tables
from tff_fedmm.pipelines.codes_stage import CodesConfig, CodesResult, learn_codes

log = logging.getLogger(__name__)

CODEBOOKS = ("private", "federated", "federated-level1")


@dataclass(frozen=True)
class CodeVariant:
    codebooks: str  # one of CODEBOOKS
    federated_cf: bool  # RQ-VAE rows from the federated CF tower (else each market's CF alone)

    @property
    def label(self) -> str:
        return f"{self.codebooks}-codebooks-{'federated' if self.federated_cf else 'local'}-cf"

    @property
    def federated(self) -> bool:
        """Whether the level-1 codebook is federated (else each market's own)."""
        return self.codebooks != "private"


@dataclass(frozen=True)
class CodeMethod:
    """What a code-using method reads: its codebooks, whether it wants the federated CF tower (it gets it
    only with `--cf-tower`), and which code levels its CTR model embeds."""

    codebooks: str
    wants_federated_cf: bool
    use_global: bool
    use_local: bool

    def variant(self, cf_tower: bool) -> CodeVariant:
        return CodeVariant(self.codebooks, self.wants_federated_cf and cf_tower)


CODE_METHODS = {
    "local+codes": CodeMethod("private", False, True, True),
    "fedmm-private-codebooks": CodeMethod("private", True, True, True),
    "fedmm-level1-only": CodeMethod("federated-level1", True, True, False),
    "fedmm": CodeMethod("federated", True, True, True),
}


class CodeVariants:
    """Learns each code variant at most once; variants share the CF stage they have in common."""

    def __init__(self, market_set: MarketSet, config: CodesConfig, checkpoints=None):
        """`checkpoints`: a seed's view of the run's checkpoints (`stage(name)`), or None."""
        self.market_set, self.config, self.checkpoints = market_set, config, checkpoints
        self._tables: dict[bool, CFTables] = {}
        self._inputs: dict[bool, dict] = {}
        self._cache: dict[CodeVariant, CodesResult] = {}
        self._reports: dict[CodeVariant, pd.DataFrame] = {}

    def variant(self, method: str) -> CodeVariant:
        """The variant `method` (a key of `CODE_METHODS`) reads under this config's CF stage."""
        return CODE_METHODS[method].variant(self.config.cf.tower)

    def tables(self, variant: CodeVariant) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The CF tables (users, items) per market that `variant`'s codes were learned from."""
        federated = variant.federated_cf
        if federated not in self._tables:
            self._tables[federated] = cf_tables(self.market_set, self.config.cf, self.checkpoints, federated,
                                                self.config.participation, self.config.privacy)
        return self._tables[federated].tables

    def _cf(self, variant: CodeVariant) -> dict:
        if variant.federated_cf not in self._inputs:
            self._inputs[variant.federated_cf] = cf_inputs(self.market_set, self.config.cf,
                                                           tables=self.tables(variant))
        return self._inputs[variant.federated_cf]

    def get(self, variant: CodeVariant) -> CodesResult:
        if variant not in self._cache:
            config = self.config
            if variant.codebooks == "federated-level1":  # a single local code carries nothing: one level
                rq = replace(config.codebook.rqvae, k_local=1)
                config = replace(config, codebook=replace(config.codebook, rqvae=rq))
            log.info("learning %s codes", variant.label)
            self._cache[variant] = learn_codes(
                self.market_set, config, federated=variant.federated, inputs=self._cf(variant),
                checkpoints=self.checkpoints, variant=f"codes-{variant.label}",
                ledger_stage=f"codebook ({variant.codebooks} codes)")
        return self._cache[variant]

    def export(self, exporter, method: str) -> None:
        """Writes `method`'s codebooks, RQ-VAE and CF tables with `exporter` (`pipelines.exports.Exporter`)."""
        variant = self.variant(method)
        exporter.write_codebooks(method, self.get(variant), self.tables(variant), variant.federated,
                                 descriptors=self.config.cf.descriptors > 0)

    def k(self, variant: CodeVariant) -> tuple[int, int]:
        rq = self.config.codebook.rqvae
        return rq.k_global, (1 if variant.codebooks == "federated-level1" else rq.k_local)

    def report(self, variant: CodeVariant) -> pd.DataFrame:
        """The codebook report of a variant, computed once (alignment column and codebooks.csv share it)."""
        if variant not in self._reports:
            pairs = None
            if self.config.anchors != "none":  # score what anchored mode was not told: held-out items
                pairs = held_out_pairs(self.market_set, public_anchors(self.market_set, self.config.data_seed,
                                                                      max_slots=self.config.anchor_max_slots))
            self._reports[variant] = codebook_report(self.market_set, self.get(variant).codes, *self.k(variant),
                                                     pairs=pairs)
        return self._reports[variant]

    def charges(self, variant: CodeVariant) -> list[dict]:
        """The DP charges (JSON) of every stage `variant`'s codes come from: a federated CF tower, a
        federated codebook; learns the variant if it was not yet."""
        codes = self.get(variant)
        return self._tables[variant.federated_cf].charges + codes.charges

    def reports(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        reports, histories = [], []
        for variant, result in self._cache.items():
            reports.append(self.report(variant).assign(codes=variant.label))
            histories.append(pd.DataFrame(result.history).assign(codes=variant.label))
        return (pd.concat(reports, ignore_index=True) if reports else pd.DataFrame(),
                pd.concat(histories, ignore_index=True) if histories else pd.DataFrame())
