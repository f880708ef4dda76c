"""A run folder is written whole or visibly incomplete, never half-written yet looking finished.

An `INCOMPLETE` marker is created before anything else and removed only after every file is in
place; each file is written to a temporary name and renamed, so a reader never sees a torn file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from tff_fedmm.errors import UsageError

MARKER = "INCOMPLETE"


def open_run_folder(path: str | Path, flag: str = "--out") -> Path:
    """Creates (or reuses) the folder, checks it is writable, and marks it incomplete."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("this run has not finished; its files may be missing or stale\n")
    except OSError as err:
        raise UsageError(f"{flag}: cannot write to {out} ({err.strerror}); expected a writable folder") from None
    return out


def write_text(out: Path, name: str, text: str) -> None:
    tmp = out / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / name)


def write_csv(out: Path, name: str, frame: pd.DataFrame) -> None:
    write_text(out, name, frame.to_csv(index=False, float_format="%.6g"))


def write_json(out: Path, name: str, data: dict) -> None:
    write_text(out, name, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def mark_complete(out: Path) -> None:
    (out / MARKER).unlink(missing_ok=True)


def is_complete(out: Path) -> bool:
    return out.is_dir() and not (out / MARKER).exists()
