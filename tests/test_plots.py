"""The run folder's figures and TensorBoard logs, from tables shaped like a real run's (no training)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from tff_fedmm.pipelines.compare import CompareResult, RESULT_COLUMNS
from tff_fedmm.plots import write_plots
from tff_fedmm.tensorboard import write_tensorboard

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MARKETS = ["m0", "m1", "m2"]
PLOTS = ["auc_by_round.png", "codebook_usage.png", "auc_by_market.png"]


def _history() -> pd.DataFrame:
    rows = []
    for method, backbone in [("fedmm", "deepfm"), ("fedavg", "deepfm"), ("fedmm", "dcnv2"), ("local", "deepfm")]:
        for market in MARKETS:
            last = 2 if (method == "local" and market == "m1") else 3  # Keras: a market stopped early
            rows += [{"method": method, "backbone": backbone, "round": r, "market": market,
                      "valid_auc": 0.6 + 0.02 * r, "valid_logloss": 0.5 - 0.01 * r} for r in range(1, last + 1)]
    rows += [{"method": "centralized", "backbone": "deepfm", "round": r, "market": "all", "valid_auc": 0.7,
              "valid_logloss": 0.45} for r in (1, 2)]
    return pd.DataFrame(rows, columns=["method", "backbone", "round", "market", "valid_auc", "valid_logloss"])


def _codebook_history() -> pd.DataFrame:
    federated = [{"round": r, "loss": 90.0 - r, "reconstruction": 60.0 - r, "local_codes_used": 0.9,
                  "global_codes_updated": 0.5 + 0.1 * r, "codes": "federated"} for r in (1, 2, 3)]
    private = [{"round": r, "loss": 80.0, "reconstruction": 50.0, "local_codes_used": 0.5 + 0.1 * i,
                "global_codes_updated": 0.4, "codes": "private", "market": m}
               for i, m in enumerate(MARKETS) for r in (1, 2, 3)]
    return pd.DataFrame(federated + private)


def _codebooks() -> pd.DataFrame:
    return pd.DataFrame([{"market": m, "global_usage": 0.4, "global_perplexity": 12.0, "local_usage": 0.7,
                          "local_perplexity": 6.0, "collision_rate": 0.9, "alignment": 0.02,
                          "alignment_chance": 0.01, "aligned_pairs": 300, "cluster_nmi": 0.5, "codes": v}
                         for v in ("federated", "private") for m in MARKETS])


def _results() -> pd.DataFrame:
    rows = [{"seed": 0, "method": method, "backbone": backbone, "market": m, "auc": 0.65 + 0.01 * i, "logloss": 0.47,
             "hr@10": 0.3, "ndcg@10": 0.17, "alignment": np.nan}
            for method, backbone in [("fedmm", "deepfm"), ("fedavg", "deepfm"), ("fedmm", "dcnv2"),
                                     ("local", "deepfm"), ("centralized", "deepfm")]
            for i, m in enumerate(MARKETS)]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def test_auc_by_market_draws_the_seed_interval_as_error_bars() -> None:
    from tff_fedmm.plots import auc_by_market

    two = pd.concat([_results(), _results().assign(seed=1, auc=lambda f: f["auc"] + 0.02)], ignore_index=True)
    ax = auc_by_market(two).axes[0]
    half_widths = [seg[1][1] - seg[0][1] for coll in ax.collections for seg in coll.get_segments()]
    # Two seeds 0.02 apart: sd 0.01414, t(0.975, 1) = 12.706 → half-width 12.706 * 0.01414 / sqrt(2) = 0.127.
    assert half_widths and np.allclose(np.array(half_widths) / 2, 12.7062 * 0.02 / 2, rtol=1e-3)
    assert auc_by_market(_results()).axes[0].collections == [] or all(
        np.allclose([seg[1][1] - seg[0][1] for seg in c.get_segments()], 0) for c in auc_by_market(_results()).axes[0].collections)


def _result(**frames: pd.DataFrame) -> CompareResult:
    tables = {"results": _results(), "history": _history(), "codebooks": _codebooks(),
              "codebook_history": _codebook_history()}
    tables.update(frames)
    return CompareResult(**tables)


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), path
    assert data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82"), f"{path}: truncated PNG"


def test_write_plots_writes_every_figure(tmp_path: Path) -> None:
    backend = matplotlib.get_backend()
    written = write_plots(tmp_path, _result())
    assert [p.name for p in written] == PLOTS
    for path in written:
        _assert_png(path)
    assert not list(tmp_path.glob(".*.tmp"))
    assert matplotlib.get_backend() == backend  # a notebook's inline backend is left alone


def test_write_plots_skips_figures_without_data(tmp_path: Path) -> None:
    no_codes = _result(codebooks=pd.DataFrame(), codebook_history=pd.DataFrame())
    assert [p.name for p in write_plots(tmp_path / "no_codes", no_codes)] == ["auc_by_round.png", "auc_by_market.png"]
    empty = CompareResult(*(pd.DataFrame() for _ in range(4)))
    assert write_plots(tmp_path / "empty", empty) == []
    only_final = _result(codebook_history=pd.DataFrame())  # codebooks.csv without a history still plots
    assert "codebook_usage.png" in [p.name for p in write_plots(tmp_path / "final", only_final)]


def _tensor_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}
            for tag in events.Tags()["tensors"]}


def test_write_tensorboard_scalars(tmp_path: Path) -> None:
    root = write_tensorboard(tmp_path, _result())
    assert root == tmp_path / "tensorboard"
    runs = sorted(p.name for p in root.iterdir())
    assert runs == sorted(["fedmm_deepfm", "fedavg_deepfm", "fedmm_dcnv2", "local_deepfm", "centralized_deepfm",
                           "codebook_federated", "codebook_private"])
    fedmm = _tensor_scalars(root / "fedmm_deepfm")
    assert set(fedmm) == {"valid_auc", "valid_logloss"}
    assert fedmm["valid_auc"] == pytest.approx({1: 0.62, 2: 0.64, 3: 0.66})
    local = _tensor_scalars(root / "local_deepfm")
    assert sorted(local["valid_auc"]) == [1, 2, 3]  # round 3: mean of the markets that reached it
    codebook = _tensor_scalars(root / "codebook_private")
    assert set(codebook) == {"loss", "reconstruction", "local_codes_used", "global_codes_updated"}
    assert codebook["local_codes_used"] == pytest.approx({1: 0.6, 2: 0.6, 3: 0.6})  # mean over markets

    write_tensorboard(tmp_path, _result())  # written again (a resumed run): one log per run, no duplicates
    assert len(list((root / "fedmm_deepfm").glob("events.out.tfevents.*"))) == 1


def test_write_tensorboard_inside_a_running_event_loop(tmp_path: Path) -> None:
    """A Jupyter kernel runs cells inside an event loop, where `asyncio.run` alone would refuse."""

    async def cell() -> Path:
        return write_tensorboard(tmp_path, _result(codebooks=pd.DataFrame(), codebook_history=pd.DataFrame()))

    root = asyncio.run(cell())
    assert set(_tensor_scalars(root / "fedavg_deepfm")) == {"valid_auc", "valid_logloss"}
