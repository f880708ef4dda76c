"""Using a finished run's exports: a market's CTR model on raw IDs, and codes for new entities.

    from tff_fedmm import load_market_model, encode
    model = load_market_model("runs/nb", "fedmm", "de")       # backbone: the one exported, or name it
    model.score(["AE7ML..."], ["B00V4584GW"])                   # click probabilities, one per pair
    encode("runs/nb", "de", new_item_embeddings)                # global and local code per row

Scoring feeds the model what the run's evaluation fed it (`features.MarketFeatures` from the exported
codes, flags and ID offsets) through the same batched call (`eval.evaluate.predict`), on the Keras model
rebuilt from the SavedModel: the scores are the run's own, to the bit. An ID the market never had has no
embedding row, so it is refused by name (no cold-start path: a new entity needs its ID row trained; `encode`
gives its codes, which the model cannot use without that row).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

import tff_fedmm.models.layers_ctr  # noqa: F401  (registers the custom layers the model is rebuilt with)
from tff_fedmm import export_layout as layout
from tff_fedmm.codes import MarketCodes, MarketQuantizer, quantizer_model
from tff_fedmm.errors import UsageError
from tff_fedmm.eval.evaluate import predict
from tff_fedmm.features import MarketFeatures
from tff_fedmm.models.cf import standardized_rows
from tff_fedmm.models.rqvae import RQVAEConfig
from tff_fedmm.run_folder import is_complete
from tff_fedmm.training import rqvae as rt

_SHOWN = 5  # unknown IDs named in an error; the count says how many more


class MarketModel:
    """One market's exported CTR model with the vocabulary and features it was trained on."""

    def __init__(self, model, features: MarketFeatures, vocab: dict[str, dict[str, int]], meta: dict):
        self.model, self.features, self.meta = model, features, meta
        self._vocab = vocab  # entity ("user"/"item") -> raw ID -> the market's own index
        self.method, self.backbone, self.market, self.seed = (meta[k] for k in ("method", "backbone", "market", "seed"))

    def unknown(self, users: Sequence, items: Sequence) -> list[tuple[int, str, str]]:
        """(pair position, entity, raw ID) of every ID not in the market's vocabulary."""
        return [(i, entity, str(raw)) for entity, ids in (("user", users), ("item", items))
                for i, raw in enumerate(ids) if str(raw) not in self._vocab[entity]]

    def score(self, users: Sequence, items: Sequence) -> np.ndarray:
        """Click probabilities (float32) of the pairs (users[i], items[i]), raw IDs of this market."""
        if len(users) != len(items):
            raise UsageError(f"score: {len(users)} users but {len(items)} items; expected one of each per pair")
        unknown = self.unknown(users, items)
        if unknown:
            shown = ", ".join(f"{entity} {raw!r} (pair {i})" for i, entity, raw in unknown[:_SHOWN])
            more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
            raise UsageError(f"unknown ID(s) in market {self.market!r}: {shown}{more}; the model has a row only for "
                             "the users and items it was trained with (markets/<market>/ids.csv)")
        examples = {entity: np.array([self._vocab[entity][str(raw)] for raw in ids], np.int32)
                    for entity, ids in (("user", users), ("item", items))}
        return predict(self.model, self.features(examples))


def _manifest(run: Path) -> dict:
    if not is_complete(run):
        raise UsageError(f"{run}: not a finished run folder (missing, or marked INCOMPLETE)")
    path = run / layout.MANIFEST
    if not path.exists():
        raise UsageError(f"{run}: no {layout.MANIFEST}; only runs of schema_version 2 (fedmm run/compare since "
                         "issue #16) export models and codes")
    return json.loads(path.read_text())


def _check_market(run: Path, manifest: dict, market: str) -> None:
    if market not in manifest["markets"]:
        raise UsageError(f"--market: no market {market!r} in {run}; markets: {', '.join(manifest['markets'])}")


def load_market_model(run_dir: str | Path, method: str, market: str, backbone: str | None = None) -> MarketModel:
    """`market`'s CTR model of `method` from the run folder `run_dir` (of its exported seed, exports.json);
    `backbone` may be left out when the method was exported on one backbone only."""
    run = Path(run_dir)
    manifest = _manifest(run)
    backbones = manifest["methods"].get(method)
    if backbones is None:
        raise UsageError(f"--method: {method!r} was not exported in {run}; exported: {', '.join(manifest['methods'])}")
    _check_market(run, manifest, market)
    if backbone is None and len(backbones) > 1:
        raise UsageError(f"--backbone: {method} was exported on {', '.join(backbones)}; name one")
    backbone = backbone or backbones[0]
    if backbone not in backbones:
        raise UsageError(f"--backbone: {method} was not exported on {backbone!r}; exported: {', '.join(backbones)}")
    folder = layout.model_dir(run, market, method, backbone)
    meta = json.loads((folder / layout.MODEL_META).read_text())
    ids = _read_ids(layout.ids_path(run, market))
    codes = _read_codes(layout.codes_path(run, market, method), ids) if meta["codes"] else None
    features = MarketFeatures(codes, meta["use_global"], meta["use_local"], meta["user_offset"], meta["item_offset"])
    vocab = {entity: {raw: i for i, raw in enumerate(rows)} for entity, rows in ids.items()}
    return MarketModel(tf.keras.models.load_model(folder, compile=False), features, vocab, meta)


def _read_ids(path: Path) -> dict[str, np.ndarray]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return {entity: frame.loc[frame["entity"] == entity, "raw_id"].to_numpy() for entity in ("user", "item")}


def _read_codes(path: Path, ids: dict[str, np.ndarray]) -> MarketCodes:
    frame = pd.read_csv(path, dtype={"raw_id": str}, keep_default_na=False)
    parts = {entity: frame[frame["entity"] == entity] for entity in ("user", "item")}
    for entity, rows in parts.items():
        if not np.array_equal(rows["raw_id"].to_numpy(), ids[entity]):
            raise UsageError(f"{path}: its {entity}s are not those of ids.csv in the same order; the export is damaged")
    column = lambda entity, name: parts[entity][name].to_numpy(np.int32)  # noqa: E731
    return MarketCodes(user_global=column("user", "global_code"), user_local=column("user", "local_code"),
                       item_global=column("item", "global_code"), item_local=column("item", "local_code"),
                       errors=np.zeros(3))


def encode(run_dir: str | Path, market: str, embeddings: np.ndarray, *, entity: str = "item",
           method: str = "fedmm") -> pd.DataFrame:
    """Global and local codes (one row per row of `embeddings`) of new users or items (`entity`) of `market`,
    from their CF embeddings (the width and space of `markets/<market>/codebooks/<method>/cf.npz`): the
    market's RQ-VAE encoder and codebooks, exactly as the run encoded its own entities."""
    run = Path(run_dir)
    _check_market(run, _manifest(run), market)
    folder = layout.codebook_dir(run, market, method)
    if not folder.is_dir():
        raise UsageError(f"encode: {method!r} has no codebooks in {run}; methods with codebooks: "
                         f"{', '.join(sorted(p.name for p in folder.parent.glob('*'))) or 'none'}")
    spec = json.loads((folder / "rqvae.json").read_text())
    if spec["descriptors"]:
        raise UsageError(f"encode: {run} read level 1 from descriptors (--level1 descriptors), which new "
                         "entities do not have here; encode supports --level1 encoder runs")
    if entity not in ("user", "item"):
        raise UsageError(f"encode: entity must be 'user' or 'item', got {entity!r}")
    with np.load(folder / "cf.npz") as cf:
        mean, std, width = cf["mean"], cf["std"], cf["users"].shape[1]
    x = np.asarray(embeddings, np.float32)
    if x.ndim != 2 or x.shape[1] != width:
        raise UsageError(f"encode: embeddings of shape {x.shape}; expected (n, {width}), CF embeddings of {market}")
    level1 = (layout.shared_codebook_path(run, method) if spec["level1"] == "shared"
              else folder / "global_codebook.npy")
    config = RQVAEConfig(**spec["rqvae"])
    model = quantizer_model(config, MarketQuantizer((), np.load(level1)))
    with np.load(folder / "rqvae.npz") as weights:
        for variable in rt.private_variables(model):
            variable.assign(weights[variable.name])
    rows = standardized_rows(x, len(x) if entity == "user" else 0, mean, std)
    global_codes, local_codes, _ = rt.encode_codes(model, rows)
    return pd.DataFrame({"global_code": global_codes, "local_code": local_codes})
