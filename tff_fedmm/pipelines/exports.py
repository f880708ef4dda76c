"""What a run leaves behind for each market: CTR models, codes, codebooks and the RQ-VAE that made them.

Paths are `tff_fedmm.export_layout`'s. Only the run's first training seed is exported (`exports.json`
names it): the other seeds' models differ only by initialisation and shuffles, exporting them would
multiply the run's disk and time by the number of seeds, and the first seed is the run `--seed S` would
make on its own.

When: a CTR stage's models are written while its test metrics are computed (the trainers' `keep` hook), so
each exported model holds exactly the weights its `results.csv` row was computed with; codes, codebooks and
CF tables are written when the stage that uses them finishes, from the codes stage's state (kept in its
checkpoint, so a resumed run exports them too). Both happen before the stage's checkpoint is marked done: a
resumed run skips a finished stage and finds its exports on disk, and a stage re-run after a kill writes
the same values again. Every file and model folder is written under a temporary name and renamed into
place, as the run folder's other files are.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from tff_fedmm import export_layout as layout
from tff_fedmm.codes import MarketCodes, quantizer_model
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.features import MarketFeatures
from tff_fedmm.models.cf import cf_standardization
from tff_fedmm.models.rqvae import local_codebook
from tff_fedmm.training import rqvae as rt
from tff_fedmm.pipelines.codes_stage import CodesResult
from tff_fedmm.pipelines.ctr_stage import Keep
from tff_fedmm.run_schema import SCHEMA_VERSION

CODE_COLUMNS = ["entity", "raw_id", "global_code", "local_code"]


def clear_exports(out: Path) -> None:
    """A fresh run (not `--resume`) must not leave a previous run's exports looking like its own."""
    for name in layout.EXPORT_DIRS:
        shutil.rmtree(Path(out) / name, ignore_errors=True)
    (Path(out) / layout.MANIFEST).unlink(missing_ok=True)


@dataclass(frozen=True)
class Exporter:
    out: Path
    market_set: MarketSet
    seed: int

    def write_ids(self) -> None:
        """Each market's vocabulary: the raw IDs its models' and codes' indices stand for."""
        for name, market in self.market_set.markets.items():
            frame = pd.DataFrame({"entity": ["user"] * market.num_users + ["item"] * market.num_items,
                                  "raw_id": np.concatenate([market.user_ids, market.item_ids])})
            _write_csv(layout.ids_path(self.out, name), frame)

    def keeper(self, method: str, backbone: str) -> Keep:
        """The trainers' `keep` hook for `method` on `backbone`: saves each market's selected model."""

        def keep(market: str, model: tf.keras.Model, features: MarketFeatures) -> None:
            meta = {"method": method, "backbone": backbone, "market": market, "seed": self.seed,
                    "inputs": list(model.input_names), "use_global": features.use_global,
                    "use_local": features.use_local, "user_offset": features.user_offset,
                    "item_offset": features.item_offset, "codes": features.codes is not None}
            _save_model(layout.model_dir(self.out, market, method, backbone), model, meta)
            if features.codes is not None:
                self._write_codes(market, method, features.codes)

        return keep

    def _write_codes(self, market: str, method: str, codes: MarketCodes) -> None:
        m = self.market_set.markets[market]
        frame = pd.DataFrame({"entity": ["user"] * m.num_users + ["item"] * m.num_items,
                              "raw_id": np.concatenate([m.user_ids, m.item_ids]),
                              "global_code": np.concatenate([codes.user_global, codes.item_global]),
                              "local_code": np.concatenate([codes.user_local, codes.item_local])})
        _write_csv(layout.codes_path(self.out, market, method), frame[CODE_COLUMNS])

    def write_codebooks(self, method: str, result: CodesResult, tables: dict[str, tuple[np.ndarray, np.ndarray]],
                        federated: bool, descriptors: bool) -> None:
        """`method`'s codebooks: the federated level-1 codebook once under `shared/`, and in each market's
        folder its local codebook, its RQ-VAE weights, its CF tables and their standardisation, and its
        level-1 codebook where that never left the market (`federated=False`)."""
        for name, quantizer in result.quantizers.items():
            folder = layout.codebook_dir(self.out, name, method)
            model = quantizer_model(result.rqvae, quantizer)
            if federated:
                _write_npy(layout.shared_codebook_path(self.out, method), quantizer.level1)
            else:
                _write_npy(folder / "global_codebook.npy", quantizer.level1)
            _write_npy(folder / "local_codebook.npy", local_codebook(model).numpy())
            _write_npz(folder / "rqvae.npz", {v.name: v.numpy() for v in rt.private_variables(model)})
            users, items = tables[name]
            mean, std = cf_standardization(users, items)
            _write_npz(folder / "cf.npz", {"users": users, "items": items, "mean": mean, "std": std})
            _write_text(folder / "rqvae.json", json.dumps(
                {"rqvae": asdict(result.rqvae), "level1": "shared" if federated else "market",
                 "descriptors": descriptors}, indent=2, sort_keys=True) + "\n")

    def write_manifest(self, methods: dict[str, list[str]]) -> None:
        """`exports.json`: what was exported (methods and their backbones), from which seed."""
        _write_text(Path(self.out) / layout.MANIFEST, json.dumps(
            {"schema_version": SCHEMA_VERSION, "seed": self.seed, "markets": self.market_set.names,
             "methods": methods}, indent=2, sort_keys=True) + "\n")


def _save_model(path: Path, model: tf.keras.Model, meta: dict) -> None:
    """A Keras SavedModel (`tf.keras.models.load_model` rebuilds it from its config and computes exactly
    as the run did) with a `serving_default` signature for TF Serving and `tf.saved_model.load`: int32
    vectors in, `probability` out (graph execution: within one float32 ulp of the Keras model)."""
    spec = {name: tf.TensorSpec([None], tf.int32, name=name) for name in model.input_names}
    serve = tf.function(lambda features: {"probability": tf.reshape(model(features, training=False), [-1])},
                        input_signature=[spec])
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # "Found untraced functions ...": Keras's note on every save, nothing to act on
    try:
        model.save(str(tmp), save_format="tf", include_optimizer=False, signatures={layout.SIGNATURE: serve})
    finally:
        absl.setLevel(level)
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    (tmp / layout.MODEL_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    _write_text(path, frame.to_csv(index=False))


def _write_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
