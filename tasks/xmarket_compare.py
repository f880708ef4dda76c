"""The full comparison on XMarket: every method, both backbones, one run folder.

    python tasks/xmarket_compare.py --data ../shared/data/xmarket-electronics --out runs/xmarket [--rounds N]

At the end it prints the peak resident memory of Python and of the TFF worker to stderr.
Any other flag goes to `fedmm compare` as given (--markets, --rounds, --seed, --codebook-rule, --cf-tower,
--resume, --quiet; a later --methods or --backbones overrides the defaults here).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tff_fedmm import cli
from tff_fedmm.cli import Parser, run_guarded
from tff_fedmm.pipelines.compare_names import BACKBONES, METHODS

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "xmarket-electronics"


def compare_argv(argv: list[str] | None = None) -> list[str]:
    """The `fedmm compare` command line this task runs."""
    parser = Parser(prog="xmarket_compare", description=__doc__.splitlines()[0],
                    epilog="Every other flag is passed to `fedmm compare` (see `fedmm compare --help`).")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help=f"XMarket directory (default {DEFAULT_DATA})")
    parser.add_argument("--out", default="runs/xmarket", help="run folder (default runs/xmarket)")
    args, passthrough = parser.parse_known_args(argv)
    return ["compare", "--data", args.data, "--methods", ",".join(METHODS), "--backbones", ",".join(BACKBONES),
            "--out", args.out, *passthrough]


def peak_memory_line() -> str:
    """Peak resident memory (VmHWM) of this process and of the TFF worker it owns, for the record."""
    from tff_fedmm.bench.procfs import proc_status_mb, worker_pid

    pid = worker_pid()
    worker = f"{proc_status_mb(pid)['VmHWM']:.0f} MB" if pid is not None else "n/a"
    return f"xmarket_compare: peak resident memory: python {proc_status_mb(os.getpid())['VmHWM']:.0f} MB, TFF worker {worker}"


def main(argv: list[str] | None = None) -> int:
    command: list[str] = []
    status = run_guarded(lambda: command.extend(compare_argv(argv)) or 0)  # a bad flag: one line, status 2
    if not command:
        return status
    status = cli.main(command)  # cli.main: `fedmm`'s logging, then run_command
    if status == 0:
        print(peak_memory_line(), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
