"""The version of a run folder's layout, so a reader knows what it is looking at.

`schema_version` is the last column of `results.csv` (every row: plain `pandas.read_csv` reads it as a
column) and a top-level key of `config.json`:

- 1: every folder written before issue #16, which carries neither. Their `results.csv` may lack columns
  added since (`seed` before issue #11, the full-ranking metrics, `auc_held_out`); `read_run` adds the
  `seed` column from config.json, so every table it returns has one.
- 2: the version-1 tables plus exports (`exports.json`, `markets/`, `shared/`: `tff_fedmm.export_layout`)
  from `fedmm run/compare`; `tasks/local_baseline.py` writes the version too (its folders have no exports).

A folder declaring a version this code does not know was written by a newer tff_fedmm: refused, clearly.
"""

from __future__ import annotations

import pandas as pd

from tff_fedmm.errors import UsageError

SCHEMA_VERSION = 2
COLUMN = "schema_version"


def with_schema_version(results: pd.DataFrame) -> pd.DataFrame:
    """`results` as written to results.csv: the version as its last column."""
    return results.assign(**{COLUMN: SCHEMA_VERSION})


def folder_version(folder: str, config: dict, results: pd.DataFrame) -> int:
    """The version `folder` declares in config.json and results.csv (1 where neither does); raises
    `UsageError` when they disagree or name a version this code cannot read."""
    declared = {}
    if COLUMN in config:
        declared["config.json"] = config[COLUMN]
    if COLUMN in results.columns:
        values = results[COLUMN].unique().tolist()
        declared["results.csv"] = values[0] if len(values) == 1 else values
    versions = {repr(v) for v in declared.values()}
    if len(versions) > 1:
        found = ", ".join(f"{name} says {value!r}" for name, value in declared.items())
        raise UsageError(f"{folder}: inconsistent schema_version ({found}); expected one version")
    version = next(iter(declared.values()), 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UsageError(f"{folder}: schema_version {version!r} is not a version; expected 1 to {SCHEMA_VERSION}")
    if version > SCHEMA_VERSION:
        raise UsageError(f"{folder}: written with schema_version {version} by a newer tff_fedmm; this one reads "
                         f"versions 1 to {SCHEMA_VERSION}: upgrade tff_fedmm to read it")
    return version


def upgraded(tables: dict[str, pd.DataFrame], config: dict) -> dict[str, pd.DataFrame]:
    """A folder's tables as `read_run` gives every version: no `schema_version` column, and a `seed` column
    first in every non-empty table (a table without one comes from a one-seed run: version 1 before issue
    #11, or `tasks/local_baseline.py`, whose seed is `config.json`'s `seed`)."""
    out = {}
    for name, frame in tables.items():
        frame = frame.drop(columns=[COLUMN], errors="ignore")
        if len(frame.columns) and "seed" not in frame.columns:
            frame.insert(0, "seed", int(config.get("seed", 0)))
        out[name] = frame
    return out
