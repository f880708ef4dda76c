"""The full comparison on XMarket: the methods, both backbones, several paired training seeds, one run folder.

    python tasks/xmarket_compare.py --seeds 0,1,2,3,4 --methods local,fedper,fedavg,centralized,fedmm

Seeds run side by side, one process per core (`--jobs`, default the number of cores); the numbers are the
same as one after another. At the end it prints the wall time and the peak resident memory of Python, of
its TFF worker and of the largest seed process to stderr.
Any other flag goes to `fedmm compare` as given (--markets, --rounds, --data-seed, --codebook-rule,
--cf-tower, --resume, --quiet; a later --backbones overrides both backbones).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tff_fedmm import cli
from tff_fedmm.cli_args import Parser, run_guarded
from tff_fedmm.pipelines.compare_names import BACKBONES, METHODS

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "xmarket-electronics"


def compare_argv(argv: list[str] | None = None) -> list[str]:
    """The `fedmm compare` command line this task runs."""
    parser = Parser(prog="xmarket_compare", description=__doc__.splitlines()[0],
                    epilog="Every other flag is passed to `fedmm compare` (see `fedmm compare --help`).")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help=f"XMarket directory (default {DEFAULT_DATA})")
    parser.add_argument("--out", default="runs/xmarket", help="run folder (default runs/xmarket)")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: all)")
    parser.add_argument("--jobs", default=None,
                        help="seeds run at once, one process each (default: the number of cores, "
                             f"{os.cpu_count()} here, or 1 with --workers; a seed keeps about one core busy)")
    args, passthrough = parser.parse_known_args(argv)
    if args.jobs is None:
        args.jobs = "1" if any(a.startswith("--workers") for a in passthrough) else str(os.cpu_count() or 1)
    return ["compare", "--data", args.data, "--methods", args.methods, "--backbones", ",".join(BACKBONES),
            "--seeds", args.seeds, "--jobs", args.jobs, "--out", args.out, *passthrough]


def peak_memory_line() -> str:
    """Peak resident memory (VmHWM) of this process and of the TFF worker it owns, and the largest of the
    finished seed processes (`--jobs`) and their workers, for the record."""
    import resource

    from tff_fedmm.bench.measure import proc_status_mb, worker_pid

    pid = worker_pid()
    worker = f"{proc_status_mb(pid, 'VmHWM'):.0f} MB" if pid is not None else "n/a"
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MB; 0 when none ended
    return (f"xmarket_compare: peak resident memory: python {proc_status_mb(os.getpid(), 'VmHWM'):.0f} MB, "
            f"TFF worker {worker}, largest finished child process {children:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    command: list[str] = []
    status = run_guarded(lambda: command.extend(compare_argv(argv)) or 0)  # a bad flag: one line, status 2
    if not command:
        return status
    started = time.monotonic()
    status = cli.main(command)  # cli.main: `fedmm`'s logging, then run_command
    if status == 0:
        print(f"xmarket_compare: wall time {time.monotonic() - started:.0f} s", file=sys.stderr)
        print(peak_memory_line(), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
