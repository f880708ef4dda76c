"""`fedmm bench` (and `tasks/bench.py`): flags in, settings out, one figure line at a time on stdout.

No TensorFlow at import (`cli` imports this to register the flags): `fedmm --help` and a bad flag answer
at once, each mistake as one `fedmm: error: --flag: ...` line. The flag types raise `UsageError` themselves,
since argparse would prefix its own errors with "argument".
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields

from tff_fedmm.bench import BenchSettings, quick_settings, run_bench
from tff_fedmm.cli_args import add_data_arguments
from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.compare_names import BACKBONES


def _count(flag: str, minimum: int, or_zero: bool = False) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text) if text.strip().lstrip("-").isdigit() else None
        if value is None or (value < minimum and not (or_zero and value == 0)):
            raise UsageError(f"{flag}: expected {'0 (skip) or ' if or_zero else ''}an integer >= {minimum}, "
                             f"got {text!r}")
        return value
    return parse


def _scaling(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("off", "none", "0"):
        return ()
    parts = [part.strip() for part in text.split(",")]
    counts = {int(part) for part in parts if part.isdigit() and int(part) > 0}
    if len(counts) < 2 or len(counts) != len(parts):  # a line needs two points
        raise UsageError(f"--scaling: expected 'off' or at least two distinct positive market counts such as "
                         f"5,10,20,50, got {text!r}")
    return tuple(sorted(counts))


def _backbone(text: str) -> str:
    if text not in BACKBONES:
        raise UsageError(f"--backbone: expected one of {', '.join(BACKBONES)}, got {text!r}")
    return text


def add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="FedMM vs TFF FedAvg and Keras: round time, throughput, upload bytes, scaling, memory")
    add_data_arguments(bench)
    bench.add_argument("--backbone", type=_backbone, default="deepfm", help="CTR backbone: deepfm (default) or dcnv2")
    bench.add_argument("--seed", type=int, default=0,
                       help="seed of the benchmark's models, random codes and inputs (default 0; --data-seed "
                            "fixes the markets)")
    # Defaults None: what is not given comes from BenchSettings, or from quick_settings under --quick.
    bench.add_argument("--rounds", type=_count("--rounds", 1), metavar="N",
                       help="timed rounds per process after warm-up, and 5x as many single training steps per "
                            "stage and size (default 5; --quick 2)")
    bench.add_argument("--warmup", type=_count("--warmup", 1), metavar="N",
                       help="untimed rounds (and steps) before timing (default 2; --quick 1)")
    bench.add_argument("--scaling", type=_scaling, metavar="N,N,...|off",
                       help="synthetic market counts for the scaling figure (default 5,10,20,50; --quick 2,3)")
    bench.add_argument("--scaling-rounds", type=_count("--scaling-rounds", 1), metavar="N",
                       help="timed rounds per market count (default 3; --quick 1)")
    bench.add_argument("--memory-rounds", type=_count("--memory-rounds", 3, or_zero=True), metavar="N",
                       help="rounds of the CTR pipeline the memory figure watches (3 at least for a growth slope); "
                            "0 skips it (default 50; --quick 4)")
    bench.add_argument("--quick", action="store_true", help="tiny markets and few rounds (for tests)")
    bench.set_defaults(handler=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    given = {f.name: getattr(args, f.name) for f in fields(BenchSettings)
             if getattr(args, f.name, None) is not None}
    run_bench(quick_settings(**given) if args.quick else BenchSettings(**given),
              emit=lambda line: print(line, flush=True))
    return 0
