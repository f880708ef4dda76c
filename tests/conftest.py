"""Shared fixtures. Data files for tests are written to tmp_path; the real data is never copied here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tff_fedmm.data.loading import RawMarket

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "xmarket-electronics"

HEADER = "userId itemId rate date"


def valid_lines(users: int = 3, items_per_user: int = 4) -> list[str]:
    """Data lines for a small market every user of which can be split."""
    return [
        f"u{u} i{(u + k) % 7} {1 + (u + k) % 5}.0 2020-01-{k + 1:02d}"
        for u in range(users)
        for k in range(items_per_user)
    ]


def raw_market(rows: list[tuple[str, str, str]], name: str = "de") -> RawMarket:
    frame = pd.DataFrame(rows, columns=["userId", "itemId", "date"])
    frame["rate"] = np.float32(5.0)
    frame["date"] = pd.to_datetime(frame["date"])
    return RawMarket(name=name, frame=frame[["userId", "itemId", "rate", "date"]], source="test", duplicates_dropped=0)


def small_market_files(markets, users: int = 40, items: int = 110, per_user: int = 6) -> dict[str, str]:
    """Markets of `users` users with `per_user` dated interactions each over the same `items` item IDs
    (so real-data alignment, which pairs identical raw IDs, has pairs to score). Ranking evaluation draws
    99 never-interacted items per user, so `items` must exceed 99 + `per_user`."""
    files = {}
    for m, name in enumerate(markets):
        lines = [HEADER]
        for u in range(users):
            for k in range(per_user):
                item = (u * per_user + k + 7 * m) % items
                lines.append(f"{name}u{u} i{item} {1 + (u + k) % 5}.0 2020-01-{k + 1:02d}")
        files[f"{name}_5core.txt"] = "\n".join(lines) + "\n"
    return files


@pytest.fixture
def market_dir(tmp_path: Path) -> Callable[..., Path]:
    """Writes `{file name: text}` into a fresh directory and returns it."""

    def write(files: dict[str, str]) -> Path:
        directory = tmp_path / "data"
        directory.mkdir(exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text)
        return directory

    return write


@pytest.fixture(scope="session")
def synthetic_set():
    from tff_fedmm.data.markets import load_markets

    return load_markets("synthetic")


@pytest.fixture(scope="session")
def tff_context():
    """The project's TFF execution context (an owned, PDEATHSIG'd worker), installed once per session.

    Every test that executes a TFF computation uses this, so TFF never starts a worker of its own.
    """
    from tff_fedmm.federated import context

    context.install_execution_context()
    yield
    worker = context._state.get("worker")
    if worker is not None:  # atexit would stop it too; stopping here keeps `pgrep worker_binary` clean sooner
        worker.stop()
