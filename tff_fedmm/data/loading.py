"""Reading per-market interaction files, with errors that point at the offending file and line.

The files are small (tens of thousands of lines), so they are split line by line in Python rather
than handed to `pandas.read_csv`: that keeps exact 1-based file line numbers for every error, even
around blank lines, and lets one code path serve whitespace-, comma- and tab-separated files alike.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tff_fedmm.errors import DataError

COLUMNS = ("userId", "itemId", "rate", "date")
MIN_USER_INTERACTIONS = 3  # leave-one-out needs one train, one valid and one test item
_SUFFIXES = (".txt", ".csv", ".tsv")
_PREFERRED_SUFFIX = "_5core.txt"  # the XMarket naming; when present, other text files are not markets
_MISSING = frozenset({"", "nan", "NaN", "NA", "N/A", "null", "NULL", "None"})

log = logging.getLogger(__name__)
Splitter = Callable[[str], list[str]]


@dataclass(frozen=True, eq=False)
class RawMarket:
    """One market's interactions as read, before any vocabulary or split exists.

    `frame` has columns userId (str), itemId (str), rate (float32), date (datetime64[ns]) in file
    order, so later steps can break date ties by file position.
    """

    name: str
    frame: pd.DataFrame
    source: str
    duplicates_dropped: int


def market_name(path: Path) -> str:
    return re.split(r"[_.]", path.name, maxsplit=1)[0]


def find_market_files(path: str | Path) -> dict[str, Path]:
    """Maps market name to its file, sorted by market.

    A directory of XMarket `<market>_5core.txt` files may also hold notes or other text files, so
    when any `_5core.txt` file exists only those count as markets.
    """
    directory = Path(path)
    if not directory.exists():
        raise DataError(f"{directory}: no such directory; expected a directory of <market>_5core.txt files")
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; expected a directory of <market>_5core.txt files")
    files = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]
    preferred = [p for p in files if p.name.endswith(_PREFERRED_SUFFIX)]
    candidates = preferred or [p for p in files if p.suffix.lower() in _SUFFIXES]
    if not candidates:
        raise DataError(f"{directory}: no market files; expected <market>_5core.txt or <market>*.txt|.csv|.tsv")
    found: dict[str, Path] = {}
    for file in sorted(candidates):
        name = market_name(file)
        if name in found:
            raise DataError(f"{directory}: market {name!r} has two files, {found[name].name} and {file.name}")
        found[name] = file
    return dict(sorted(found.items()))


def load_market_dir(path: str | Path, markets: Sequence[str] | None = None) -> dict[str, RawMarket]:
    files = find_market_files(path)
    if markets is not None:
        unknown = [m for m in markets if m not in files]
        if unknown:
            raise DataError(f"{path}: no market {unknown[0]!r}; available markets: {', '.join(files)}")
        files = {m: files[m] for m in markets}
    return {name: load_market_file(file, name) for name, file in files.items()}


def load_market_file(path: Path, name: str | None = None) -> RawMarket:
    name = name or market_name(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a BOM must not become part of "userId"
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err}); expected a UTF-8 text file") from None
    lines = text.splitlines()
    if not text.strip():
        raise DataError(f"{path}: empty file; expected a header line '{' '.join(COLUMNS)}' and data lines")
    split = splitter(lines[0])
    header = split(lines[0])
    _check_header(path, header)
    numbers, rows = _data_rows(path, lines, split, len(header))
    cells = {col: np.array([row[i] for row in rows], dtype=object) for i, col in enumerate(header)}
    frame = _typed_frame(path, cells, numbers)
    _check_enough_history(path, frame)
    duplicated = frame.duplicated(["userId", "itemId", "date"])
    dropped = int(duplicated.sum())
    if dropped:
        log.warning("%s: dropped %d duplicate (userId, itemId, date) rows", path, dropped)
        frame = frame[~duplicated].reset_index(drop=True)
    return RawMarket(name=name, frame=frame, source=str(path), duplicates_dropped=dropped)


def write_market_dir(raw: dict[str, RawMarket], folder: str | Path) -> dict[str, Path]:
    """Writes markets as XMarket files (`<market>_5core.txt`: header, then `userId itemId rate date`
    separated by spaces, dates YYYY-MM-DD), the format `load_market_dir` reads: generated sets can then go
    through every command's `--data DIR` path, file reading included."""
    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, market in raw.items():
        path = directory / f"{name}{_PREFERRED_SUFFIX}"
        frame = market.frame[list(COLUMNS)]
        frame.to_csv(path, sep=" ", index=False, date_format="%Y-%m-%d", float_format="%.1f", lineterminator="\n")
        written[name] = path
    return written


def splitter(header: str) -> Splitter:
    """The header decides the separator: a tab or comma there means the data uses it too."""
    for sep in ("\t", ","):
        if sep in header:
            return lambda line, sep=sep: [cell.strip() for cell in line.split(sep)]
    return str.split


def _check_header(path: Path, header: list[str]) -> None:
    missing = [c for c in COLUMNS if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    expected = f"expected header columns '{' '.join(COLUMNS)}'"
    if missing:
        raise DataError(f"{path}:1: missing column {', '.join(missing)}; {expected}")
    if extra:
        raise DataError(f"{path}:1: unexpected column {', '.join(map(repr, extra))}; {expected}")
    if len(header) != len(set(header)):
        raise DataError(f"{path}:1: repeated column name; {expected}")


def _data_rows(
    path: Path, lines: list[str], split: Splitter, width: int
) -> tuple[np.ndarray, list[list[str]]]:
    numbers, rows = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = split(line)
        if len(cells) != width:
            raise DataError(f"{path}:{number}: {len(cells)} fields; expected {width} ({' '.join(COLUMNS)})")
        numbers.append(number)
        rows.append(cells)
    if not rows:
        raise DataError(f"{path}: no data lines after the header; expected one interaction per line")
    return np.array(numbers), rows


def _typed_frame(path: Path, cells: dict[str, np.ndarray], numbers: np.ndarray) -> pd.DataFrame:
    for col in COLUMNS:
        missing = np.isin(cells[col], list(_MISSING))
        if missing.any():
            first = int(np.argmax(missing))
            raise DataError(f"{path}:{numbers[first]}: {col} is empty or NaN ({cells[col][first]!r}); expected a value")
    rate = pd.to_numeric(pd.Series(cells["rate"]), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(rate)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(f"{path}:{numbers[first]}: rate {cells['rate'][first]!r} is not a number; expected e.g. 4.0")
    date = pd.to_datetime(pd.Series(cells["date"]), format="%Y-%m-%d", errors="coerce")
    bad = date.isna().to_numpy()
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(f"{path}:{numbers[first]}: date {cells['date'][first]!r} is not a date; expected YYYY-MM-DD")
    return pd.DataFrame(
        {
            "userId": cells["userId"].astype(str),
            "itemId": cells["itemId"].astype(str),
            "rate": rate.astype(np.float32),
            "date": date.astype("datetime64[ns]"),
        }
    )


def _check_enough_history(path: Path, frame: pd.DataFrame) -> None:
    per_user = frame.groupby("userId")["itemId"].nunique()
    if per_user.max() < MIN_USER_INTERACTIONS:
        raise DataError(
            f"{path}: too small to split: no user has {MIN_USER_INTERACTIONS} or more distinct items; "
            "expected at least one such user for train/valid/test"
        )
