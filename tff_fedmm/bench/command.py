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

BACKBONES = ("deepfm", "dcnv2")  # = models.ctr.BACKBONES; importing that module loads TensorFlow


def _count(flag: str, minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{flag}: expected an integer, got {text!r}") from None
        if value < minimum:
            raise UsageError(f"{flag}: expected an integer >= {minimum}, got {value}")
        return value
    return parse


def _memory_rounds(text: str) -> int:
    value = _count("--memory-rounds", 0)(text)
    if 0 < value < 3:
        raise UsageError(f"--memory-rounds: expected 0 (skip) or at least 3 rounds (a growth slope needs them), "
                         f"got {value}")
    return value


def _scaling(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("off", "none", "0"):
        return ()
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--scaling: expected comma-separated market counts such as 5,10,20,50 or 'off', "
                         f"got {text!r}") from None
    if len(counts) < 2 or min(counts) < 1 or len(set(counts)) != len(counts):
        raise UsageError(f"--scaling: expected at least two distinct positive market counts (a line needs two "
                         f"points), got {text!r}")
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
                       help="seed of the benchmark's models, workloads and generated markets (default 0)")
    # Defaults None: what is not given comes from BenchSettings, or from quick_settings under --quick.
    bench.add_argument("--rounds", type=_count("--rounds", 1), metavar="N",
                       help="timed rounds per process, after warm-up (default 5; --quick 2)")
    bench.add_argument("--warmup", type=_count("--warmup", 1), metavar="N",
                       help="untimed rounds before timing (default 2; --quick 1)")
    bench.add_argument("--scaling", type=_scaling, metavar="N,N,...|off",
                       help="synthetic market counts for the scaling figure (default 5,10,20,50; --quick 2,3)")
    bench.add_argument("--scaling-rounds", type=_count("--scaling-rounds", 1), metavar="N",
                       help="timed rounds per market count (default 3; --quick 1)")
    bench.add_argument("--memory-rounds", type=_memory_rounds, metavar="N",
                       help="rounds of the CTR pipeline the memory figure watches; 0 skips it (default 50; --quick 4)")
    bench.add_argument("--quick", action="store_true", help="tiny markets and few rounds (for tests)")
    bench.set_defaults(handler=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    given = {f.name: getattr(args, f.name) for f in fields(BenchSettings)
             if getattr(args, f.name, None) is not None}
    run_bench(quick_settings(**given) if args.quick else BenchSettings(**given),
              emit=lambda line: print(line, flush=True))
    return 0
