"""How a whole `fedmm run` grows with the data: one seed on synthetic sets of growing interaction counts.

    python tasks/scale.py --sizes 50000,200000,1000000 --out runs/scale

Each size is a set of five unequal markets from the synthetic generator (`data.synthetic.sized_config`:
users and items grow with the interactions), written as XMarket files to OUT/size-N/data and run with
`python -m tff_fedmm run --data OUT/size-N/data --seed S --data-seed S --out OUT/size-N/run` in its own
process. Per size: wall time, CPU time and peak resident memory of the run and its TFF worker
(`scale.process_cost`). OUT/scale.csv gets a row and OUT/scale.png (wall and CPU seconds against interactions,
log-log) are redrawn as soon as a size is done; the last line printed is the fitted log-log slope of wall time
against interactions (1 = linear growth). SIGTERM (`timeout 3600 python tasks/scale.py ...`) ends the size in
progress and its run's processes, says how long it had run, prints the slope of the finished sizes and exits
with status 124.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from tff_fedmm.cli_args import Parser, add_seed_argument, run_guarded

# A slope this far above 1 still counts as linear: wall time on a machine shared with other jobs moves by
# several percent between runs, which over a 20x range of sizes tilts the fit by a few hundredths.
SLOPE_NOISE = 0.1
STOPPED_STATUS = 124  # what `timeout` itself reports when it had to stop the command


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=[50_000, 200_000, 1_000_000], metavar="N,N,...",
                        help="interaction counts of the sets, one run each (default 50000,200000,1000000)")
    parser.add_argument("--out", required=True, help="folder for the sets, the runs, scale.csv and scale.png")
    add_seed_argument(parser)
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per stage of each run (default: fedmm run's own, 20)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress lines on stderr, none in the runs' logs (OUT/size-N/run.log)")
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def _sizes(text: str) -> list[int]:
    from tff_fedmm.data.synthetic import MIN_SIZED_INTERACTIONS

    expected = f"expected distinct comma-separated interaction counts of {MIN_SIZED_INTERACTIONS} or more"
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{expected} such as 50000,200000, got {text!r}") from None
    if not sizes or min(sizes) < MIN_SIZED_INTERACTIONS or len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"{expected} (smaller sets leave too few items for ranking "
                                         f"evaluation), got {text!r}")
    return sorted(sizes)


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from tff_fedmm.scale import COLUMNS, RunFailed, loglog_slope, measure_run, write_scale_plot
    from tff_fedmm.errors import UsageError

    if args.rounds is not None and args.rounds < 1:
        raise UsageError(f"--rounds: expected a positive number of rounds, got {args.rounds}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    previous = signal.signal(signal.SIGTERM, _stop)  # `timeout` ends a sweep: keep the finished sizes
    try:
        for size in args.sizes:
            if not args.quiet:
                print(f"scale: {size} interactions: generating, then one fedmm run seed {args.seed}", file=sys.stderr)
            started = time.perf_counter()
            try:
                rows.append(measure_run(size, out / f"size-{size}", args.seed, args.rounds, quiet=args.quiet))
            except RunFailed as err:
                print(f"scale: error: {err}", file=sys.stderr)
                return 1
            except Stopped:
                print(f"scale: stopped during {size} interactions after {time.perf_counter() - started:.0f} s "
                      f"(generation and run; its progress: {out / f'size-{size}' / 'run.log'})", flush=True)
                break
            pd.DataFrame(rows, columns=COLUMNS).to_csv(out / "scale.csv", index=False)
            write_scale_plot(rows, out / "scale.png")
            row = rows[-1]
            print(f"scale: interactions={row['interactions']} wall_s={row['wall_seconds']:.1f} "
                  f"cpu_s={row['cpu_seconds']:.1f} peak_rss_mb={row['peak_rss_mb']:.0f}", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    slope = loglog_slope([r["interactions"] for r in rows], [r["wall_seconds"] for r in rows])
    verdict = ("n/a (fewer than two sizes)" if slope != slope
               else "no faster than linear" if slope <= 1 + SLOPE_NOISE else "FASTER than linear")
    print(f"scale: loglog_slope wall_seconds/interactions = {slope:.3f} ({verdict})")
    return 0 if len(rows) == len(args.sizes) else STOPPED_STATUS


class Stopped(Exception):
    """SIGTERM (as `timeout` sends): the current size is abandoned, its run's process tree ended."""


def _stop(signum, frame) -> None:
    raise Stopped

if __name__ == "__main__":
    sys.exit(main())
