"""The code variants a comparison's methods read, each learned at most once per seed.

A variant names how its CF stage ran (alone, or with the shared tower federated) and how its codebooks
did: `private` (each market alone), `private-fedcf` (alone, on federated-tower CF), `global-only` (the
federated level-1 codebook, one effective level) and `federated` (FedMM's).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd

from tff_fedmm.data.anchors import held_out_pairs, public_anchors
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.pipelines.codebook_report import codebook_report
from tff_fedmm.pipelines.cf_stage import CFTables, cf_inputs, cf_tables
from tff_fedmm.pipelines.codes_stage import CodesConfig, CodesResult, learn_codes

log = logging.getLogger(__name__)

# Which codes each code-using method reads: (code variant, use_global, use_local).
CODE_METHODS = {
    "local+codes": ("private", True, True),
    "fedmm-local-only": ("private-fedcf", True, True),
    "fedmm-global-only": ("global-only", True, False),
    "fedmm": ("federated", True, True),
}


class CodeVariants:
    """Learns each code variant at most once; variants share the CF stage they have in common."""

    def __init__(self, market_set: MarketSet, config: CodesConfig, checkpoints=None):
        """`checkpoints`: a seed's view of the run's checkpoints (`stage(name)`), or None."""
        self.market_set, self.config, self.checkpoints = market_set, config, checkpoints
        self._tables: dict[bool, CFTables] = {}
        self._inputs: dict[bool, dict] = {}
        self._cache: dict[str, CodesResult] = {}
        self._reports: dict[str, pd.DataFrame] = {}

    def tables(self, variant: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The CF tables (users, items) per market that `variant`'s codes were learned from."""
        federated = variant != "private" and self.config.cf.tower  # without a tower there is nothing to federate
        if federated not in self._tables:
            self._tables[federated] = cf_tables(self.market_set, self.config.cf, self.checkpoints, federated,
                                                self.config.participation, self.config.privacy)
        return self._tables[federated].tables

    def _cf(self, variant: str) -> dict:
        federated = variant != "private" and self.config.cf.tower
        if federated not in self._inputs:
            self._inputs[federated] = cf_inputs(self.market_set, self.config.cf, tables=self.tables(variant))
        return self._inputs[federated]

    def canonical(self, variant: str) -> str:
        """Without a CF tower there is no federated CF: `private-fedcf` codes are the `private` ones."""
        return "private" if variant == "private-fedcf" and not self.config.cf.tower else variant

    def get(self, variant: str) -> CodesResult:
        variant = self.canonical(variant)
        if variant not in self._cache:
            config = self.config
            if variant == "global-only":  # a single local code carries nothing: one effective level
                rq = replace(config.codebook.rqvae, k_local=1)
                config = replace(config, codebook=replace(config.codebook, rqvae=rq))
            log.info("learning %s codes", variant)
            self._cache[variant] = learn_codes(
                self.market_set, config, federated=self.federated(variant), inputs=self._cf(variant),
                checkpoints=self.checkpoints, variant=f"codes-{variant}")
        return self._cache[variant]

    @staticmethod
    def federated(variant: str) -> bool:
        """Whether `variant`'s level-1 codebook is federated (else each market's own)."""
        return variant in ("federated", "global-only")

    def export(self, exporter, method: str) -> None:
        """Writes `method`'s codebooks, RQ-VAE and CF tables with `exporter` (`pipelines.exports.Exporter`)."""
        variant = self.canonical(CODE_METHODS[method][0])
        exporter.write_codebooks(method, self.get(variant), self.tables(variant), self.federated(variant),
                                 descriptors=self.config.cf.descriptors > 0)

    def k(self, variant: str) -> tuple[int, int]:
        rq = self.config.codebook.rqvae
        return rq.k_global, (1 if variant == "global-only" else rq.k_local)

    def report(self, variant: str) -> pd.DataFrame:
        """The codebook report of a variant, computed once (alignment column and codebooks.csv share it)."""
        variant = self.canonical(variant)
        if variant not in self._reports:
            pairs = None
            if self.config.anchors != "none":  # score what anchored mode was not told: held-out items
                pairs = held_out_pairs(self.market_set, public_anchors(self.market_set, self.config.data_seed,
                                                                      max_slots=self.config.anchor_max_slots))
            self._reports[variant] = codebook_report(self.market_set, self.get(variant).codes, *self.k(variant),
                                                     pairs=pairs)
        return self._reports[variant]

    def charges(self, variant: str) -> list[dict]:
        """The DP charges (JSON) of every stage `variant`'s codes come from: a federated CF tower, a
        federated codebook; learns the variant if it was not yet."""
        codes = self.get(variant)
        federated = self.canonical(variant) != "private" and self.config.cf.tower
        return self._tables[federated].charges + codes.charges

    def reports(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        reports, histories = [], []
        for variant, result in self._cache.items():
            reports.append(self.report(variant).assign(codes=variant))
            histories.append(pd.DataFrame(result.history).assign(codes=variant))
        return (pd.concat(reports, ignore_index=True) if reports else pd.DataFrame(),
                pd.concat(histories, ignore_index=True) if histories else pd.DataFrame())
