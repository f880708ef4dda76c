"""How a whole `fedmm run` grows with the data (issue #15, item 5): sets of a given interaction count, one
measured run per set, the log-log slope of wall time against interactions, and its plot.

The sets come from the one synthetic generator (`data.synthetic.sized_config`: five unequal markets whose
users and items grow with the interactions) and are written as XMarket files, so the run measured is the
one a user runs on a data directory, file reading included. Each run is a separate process, measured with
its TFF worker (`scale.process_cost`): in-process timing would miss the worker, which does the federated
work, and one process per size keeps one run's caches and memory out of the next one's figures.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tff_fedmm.scale.process_cost import ProcessCost, measure_command

COLUMNS = ["size", "interactions", "markets", "users", "items", "wall_seconds", "cpu_seconds", "peak_rss_mb",
           "largest_process_rss_mb", "leftover_processes"]


@dataclass(frozen=True)
class SetShape:
    interactions: int
    markets: int
    users: int  # summed over markets
    items: int


def write_sized_set(size: int, folder: Path, seed: int) -> SetShape:
    """Generates about `size` interactions (`sized_config`, data seed `seed`) into `folder` as XMarket files."""
    from tff_fedmm.data.loading import write_market_dir
    from tff_fedmm.data.synthetic import generate_synthetic, sized_config

    raw = generate_synthetic(sized_config(size, seed)).raw
    write_market_dir(raw, folder)
    frames = [market.frame for market in raw.values()]
    return SetShape(interactions=sum(len(f) for f in frames), markets=len(frames),
                    users=sum(f["userId"].nunique() for f in frames), items=sum(f["itemId"].nunique() for f in frames))


def run_command(data: Path, out: Path, seed: int, rounds: int | None, quiet: bool) -> list[str]:
    """`fedmm run` on one seed, as a user types it (`python -m tff_fedmm run ...`)."""
    argv = [sys.executable, "-m", "tff_fedmm", "run", "--data", str(data), "--seed", str(seed),
            "--data-seed", str(seed), "--out", str(out)]
    return argv + (["--rounds", str(rounds)] if rounds is not None else []) + (["--quiet"] if quiet else [])


def measure_run(size: int, folder: Path, seed: int, rounds: int | None = None, quiet: bool = True) -> dict:
    """Writes the set for `size` under `folder`/data, runs one seed into `folder`/run (log: `folder`/run.log)
    and returns its row of COLUMNS, or raises RunFailed with the log's last line."""
    shape = write_sized_set(size, folder / "data", seed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_package_root(), os.environ.get("PYTHONPATH")]))}
    log = folder / "run.log"
    cost: ProcessCost = measure_command(run_command(folder / "data", folder / "run", seed, rounds, quiet), log, env=env)
    if cost.returncode != 0:
        raise RunFailed(f"fedmm run on {size} interactions ended with status {cost.returncode}: {_last_line(log)} "
                        f"(log: {log})")
    row = {"size": size, **asdict(shape), **asdict(cost)}
    row["leftover_processes"] = row.pop("leftovers")
    return {key: row[key] for key in COLUMNS}


class RunFailed(RuntimeError):
    """A measured run did not finish: its numbers would measure a failure, not a run."""


def loglog_slope(interactions: Sequence[float], seconds: Sequence[float]) -> float:
    """Least-squares slope of log(seconds) against log(interactions): 1 is linear growth; NaN below 2 sizes."""
    import numpy as np

    if len(set(interactions)) < 2:
        return math.nan
    return float(np.polyfit(np.log(interactions), np.log(seconds), 1)[0])


def write_scale_plot(rows: Sequence[dict], path: Path) -> Path:
    """Wall and CPU seconds against interactions on log-log axes, with a slope-1 line through the first point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [row["interactions"] for row in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key, label in (("wall_seconds", "wall"), ("cpu_seconds", "CPU (run + TFF worker)")):
        y = [row[key] for row in rows]
        ax.plot(x, y, "o-", label=f"{label}, slope {loglog_slope(x, y):.2f}")
    if x:
        ax.plot([x[0], x[-1]], [rows[0]["wall_seconds"], rows[0]["wall_seconds"] * x[-1] / x[0]], "k:",
                label="linear (slope 1)")
    ax.set(xscale="log", yscale="log", xlabel="interactions (5 markets)", ylabel="seconds",
           title="fedmm run, one seed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _package_root() -> str:
    """The directory holding `tff_fedmm`, so the measured run uses this code whatever the caller's PYTHONPATH."""
    return str(Path(__file__).resolve().parents[2])


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"
