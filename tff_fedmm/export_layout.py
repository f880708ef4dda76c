"""Where a run folder keeps its exports: one place for the writer (`pipelines.exports`) and the readers
(`tff_fedmm.scoring`), so the two can never disagree on a path.

    RUN_DIR/exports.json                                  manifest: schema version, exported seed, methods
    RUN_DIR/shared/<method>/global_codebook.npy           the federated level-1 codebook (fedmm, fedmm-level1-only)
    RUN_DIR/markets/<market>/                             everything private to the market:
        ids.csv                                           its vocabulary: entity, raw_id (row order = index)
        models/<method>/<backbone>/                       CTR SavedModel + fedmm.json (how to feed it)
        codes/<method>.csv                                entity, raw_id, global_code, local_code
        codebooks/<method>/                               local_codebook.npy, rqvae.npz (encoder, decoder,
                                                          local codebook), cf.npz (CF tables and their
                                                          standardisation), rqvae.json; global_codebook.npy
                                                          where level 1 is the market's own

Nothing here imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = "exports.json"
MARKETS = "markets"
SHARED = "shared"
MODEL_META = "fedmm.json"  # next to saved_model.pb: inputs, code fields and ID offsets of the model
SIGNATURE = "serving_default"  # int32 [None] per input -> {"probability": float32 [None]}
EXPORT_DIRS = (MARKETS, SHARED)


def market_dir(run: Path, market: str) -> Path:
    return Path(run) / MARKETS / market


def ids_path(run: Path, market: str) -> Path:
    return market_dir(run, market) / "ids.csv"


def model_dir(run: Path, market: str, method: str, backbone: str) -> Path:
    return market_dir(run, market) / "models" / method / backbone


def codes_path(run: Path, market: str, method: str) -> Path:
    return market_dir(run, market) / "codes" / f"{method}.csv"


def codebook_dir(run: Path, market: str, method: str) -> Path:
    return market_dir(run, market) / "codebooks" / method


def shared_codebook_path(run: Path, method: str) -> Path:
    return Path(run) / SHARED / method / "global_codebook.npy"
