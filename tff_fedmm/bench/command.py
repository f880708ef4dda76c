"""The `fedmm bench` subcommand (and `tasks/bench.py`): flags in, figure lines out on stdout.

No TensorFlow at import: `cli.build_parser` imports this to register the flags.
"""

from __future__ import annotations

import argparse

from tff_fedmm.bench.options import add_bench_arguments, settings_from_args
from tff_fedmm.cli_args import add_data_arguments

HELP = "FedMM vs TFF FedAvg and Keras: round time, throughput, upload bytes, scaling, memory"


def add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help=HELP)
    add_data_arguments(bench)
    add_bench_arguments(bench)
    bench.set_defaults(handler=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    """Validates every flag before loading anything, then prints each figure as it is measured."""
    settings = settings_from_args(args)
    from tff_fedmm.bench import run_bench

    run_bench(settings, emit=lambda line: print(line, flush=True))
    return 0
