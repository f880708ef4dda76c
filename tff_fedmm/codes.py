"""Discrete codes per market: (global code, local code) for every user and item, as CTR features.

Codes are computed inside the market from its own RQ-VAE state and stay there; only their meaning
(for global codes) is shared, through the federated codebook.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tff_fedmm.models.rqvae import RQVAEConfig, build_rqvae, global_codebook
from tff_fedmm.training import rqvae as rt


FIELDS = ("user_global", "user_local", "item_global", "item_local", "errors")


@dataclass(frozen=True)
class MarketCodes:
    user_global: np.ndarray
    user_local: np.ndarray
    item_global: np.ndarray
    item_local: np.ndarray
    errors: np.ndarray  # mean squared error: level-1 quantization, after level 2, reconstruction


@dataclass(frozen=True)
class MarketQuantizer:
    """What turns a market's RQ-VAE input rows into codes: the private RQ-VAE weights (encoder, decoder,
    local codebook; `training.rqvae.private_variables` order) and the level-1 codebook (the federated global
    codebook, or the market's own in the private variants). Kept so a run can export it and `encode` new
    entities exactly as the run encoded its own."""

    private: tuple[np.ndarray, ...]
    level1: np.ndarray


def quantizer_model(config: RQVAEConfig, quantizer: MarketQuantizer):
    """The RQ-VAE of `config` holding `quantizer`'s weights."""
    model = build_rqvae(config)
    global_codebook(model).assign(quantizer.level1)
    for v, w in zip(rt.private_variables(model), quantizer.private):
        v.assign(w)
    return model


def encode_market(config: RQVAEConfig, quantizer: MarketQuantizer, x: np.ndarray, num_users: int) -> MarketCodes:
    """`x` is `rqvae_inputs(users, items)`: its first `num_users` rows are users, the rest items."""
    g, l, errors = rt.encode_codes(quantizer_model(config, quantizer), x)
    return MarketCodes(user_global=g[:num_users], user_local=l[:num_users],
                       item_global=g[num_users:], item_local=l[num_users:], errors=errors)


def with_codes(examples: Mapping[str, np.ndarray], codes: MarketCodes | None, *, use_global: bool = True,
               use_local: bool = True) -> dict[str, np.ndarray]:
    """Adds the code fields the CTR models read (`user_gcode`, `item_gcode`, `user_lcode`, `item_lcode`)."""
    out = dict(examples)
    if codes is None:
        return out
    users, items = examples["user"], examples["item"]
    if use_global:
        out["user_gcode"] = codes.user_global[users].astype(np.int32)
        out["item_gcode"] = codes.item_global[items].astype(np.int32)
    if use_local:
        out["user_lcode"] = codes.user_local[users].astype(np.int32)
        out["item_lcode"] = codes.item_local[items].astype(np.int32)
    return out
