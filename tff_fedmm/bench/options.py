"""`fedmm bench` flags and the settings they resolve to.

Kept free of TensorFlow imports: `fedmm --help` and a bad flag must answer in well under a second, and
every mistake must end as one `fedmm: error: --flag: ...` line (exit 2) before any model is built.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from tff_fedmm.errors import UsageError

DEFAULT_SCALING = (5, 10, 20, 50)
BACKBONES = ("deepfm", "dcnv2")  # = models.ctr.BACKBONES; importing that module loads TensorFlow


@dataclass(frozen=True)
class SyntheticSizes:
    """Generator sizes (see `data.synthetic.SyntheticConfig`); markets are generated at these sizes."""

    users_per_market: int = 400
    items_per_market: int = 300
    interactions_per_user: int = 12


# Items: the pipeline's ranking evaluation needs 99 negatives per user.
QUICK_SIZES = SyntheticSizes(users_per_market=50, items_per_market=160, interactions_per_user=6)


@dataclass(frozen=True)
class BenchSettings:
    """Everything one bench run measures with; `quick()` is the test's small version."""

    data: str = "synthetic"
    markets: list[str] | None = None
    seed: int = 0
    backbone: str = "deepfm"
    warmup: int = 2  # rounds run before timing: the first `next` compiles in the worker
    rounds: int = 5  # timed rounds per process; figures are medians over them
    scaling: tuple[int, ...] = DEFAULT_SCALING  # () skips the scaling figure
    scaling_rounds: int = 3
    memory_rounds: int = 50  # 0 skips the memory figure
    sizes: SyntheticSizes = field(default_factory=SyntheticSizes)  # synthetic markets (default data, scaling)
    synthetic_markets: int = 4  # markets of the default synthetic data


def quick_settings(**overrides) -> BenchSettings:
    """Small enough for a test on 2 shared cores: tiny markets, 1 warm-up and 2 timed rounds."""
    base = {"warmup": 1, "rounds": 2, "scaling": (2, 3), "scaling_rounds": 1, "memory_rounds": 4,
            "sizes": QUICK_SIZES, "synthetic_markets": 2}
    base.update(overrides)
    return BenchSettings(**base)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags after the data flags (`cli_args.add_data_arguments`, added by `bench.command`)."""
    parser.add_argument("--backbone", default="deepfm", help="CTR backbone: deepfm (default) or dcnv2")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the benchmark's models, workloads and generated markets (default 0)")
    parser.add_argument("--rounds", type=str, default=None, metavar="N",
                        help="timed rounds per process, after warm-up (default 5; --quick 2)")
    parser.add_argument("--warmup", type=str, default=None, metavar="N",
                        help="untimed rounds before timing (default 2; --quick 1)")
    parser.add_argument("--scaling", type=str, default=None, metavar="N,N,...|off",
                        help="synthetic market counts for the scaling figure (default 5,10,20,50; --quick 2,3)")
    parser.add_argument("--scaling-rounds", type=str, default=None, metavar="N",
                        help="timed rounds per market count (default 3; --quick 1)")
    parser.add_argument("--memory-rounds", type=str, default=None, metavar="N",
                        help="rounds of the CTR pipeline the memory figure watches; 0 skips it (default 50; --quick 4)")
    parser.add_argument("--quick", action="store_true", help="tiny markets and few rounds (for tests)")


def _int(flag: str, text: str | None, minimum: int) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{flag}: expected an integer, got {text!r}") from None
    if value < minimum:
        raise UsageError(f"{flag}: expected an integer >= {minimum}, got {value}")
    return value


def _scaling(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    if text.strip().lower() in ("off", "none", "0"):
        return ()
    parts = [p.strip() for p in text.split(",")]
    counts = []
    for part in parts:
        try:
            counts.append(int(part))
        except ValueError:
            raise UsageError(f"--scaling: expected comma-separated market counts such as 5,10,20,50 or 'off', "
                             f"got {text!r}") from None
    if len(counts) < 2 or min(counts) < 1 or len(set(counts)) != len(counts):
        raise UsageError(f"--scaling: expected at least two distinct positive market counts (a line needs two "
                         f"points), got {text!r}")
    return tuple(sorted(counts))


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    """Validates every flag (raising `UsageError` naming it) and applies --quick's defaults under them."""
    if args.backbone not in BACKBONES:
        raise UsageError(f"--backbone: expected one of {', '.join(BACKBONES)}, got {args.backbone!r}")
    explicit = {
        "rounds": _int("--rounds", args.rounds, 1),
        "warmup": _int("--warmup", args.warmup, 1),
        "scaling": _scaling(args.scaling),
        "scaling_rounds": _int("--scaling-rounds", args.scaling_rounds, 1),
        "memory_rounds": _int("--memory-rounds", args.memory_rounds, 0),
    }
    if explicit["memory_rounds"] is not None and 0 < explicit["memory_rounds"] < 3:
        raise UsageError(f"--memory-rounds: expected 0 (skip) or at least 3 rounds (a growth slope needs "
                         f"them), got {explicit['memory_rounds']}")
    common = {"data": args.data, "markets": args.markets, "seed": args.seed, "backbone": args.backbone}
    chosen = {k: v for k, v in explicit.items() if v is not None}
    return quick_settings(**common, **chosen) if args.quick else BenchSettings(**common, **chosen)
