"""The `fedmm` command line.

Each subcommand is a small handler `(args) -> exit code` registered in `build_parser`. Handlers
import what they need inside their body: `fedmm --help` and data-only commands must not pay the
seconds it takes to import TensorFlow Federated. Every user mistake (bad flag, bad data) ends as one
line `fedmm: error: <message>` on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from tff_fedmm.bench.command import add_bench_command
from tff_fedmm.cli_compare import add_compare_commands, add_privacy_arguments
from tff_fedmm.cli_score import add_score_command
from tff_fedmm.errors import UsageError
from tff_fedmm.worker_cli import add_worker_command

if TYPE_CHECKING:
    from tff_fedmm.data.markets import MarketSet

USAGE_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report it
INTERRUPTED = "fedmm: interrupted; an unfinished run folder stays marked INCOMPLETE and continues with --resume"


class Parser(argparse.ArgumentParser):
    """argparse would print the usage block and exit; raising keeps the one-line error contract."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fedmm", description="FedMM: federated multi-market CTR prediction on TensorFlow Federated.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_data_commands(commands)
    _add_signature_command(commands)
    add_compare_commands(commands, add_data_arguments)
    add_score_command(commands)
    add_bench_command(commands, add_data_arguments)
    add_worker_command(commands)
    return parser


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="inspect the markets before training")
    data_commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    summary = data_commands.add_parser("summary", help="per-market interactions, users, items and split sizes")
    add_data_arguments(summary)
    summary.set_defaults(handler=_data_summary)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose markets; every command that loads data shares them."""
    parser.add_argument(
        "--data",
        default="synthetic",
        metavar="DIR|synthetic",
        help="directory of <market>_5core.txt files, or 'synthetic' for generated markets (default)",
    )
    parser.add_argument(
        "--markets", type=market_list, metavar="A,B,...", help="comma-separated markets to use (default: all)"
    )
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the synthetic generator and of every evaluation candidate set (default 0)")


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
    """`--seed`: the training seed of commands and tasks that train one seed (`--data-seed` fixes the data)."""
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed: initialisation, shuffles, drawn training negatives (default 0)")


def market_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated market names such as de,fr, got {text!r}")
    return names


def load_market_set(args: argparse.Namespace) -> MarketSet:
    from tff_fedmm.data.markets import load_markets
    from tff_fedmm.data.synthetic import SyntheticConfig

    return load_markets(args.data, args.markets, SyntheticConfig(seed=args.data_seed))


def _data_summary(args: argparse.Namespace) -> int:
    from tff_fedmm.data.summary import format_summary, summarize

    print(format_summary(summarize(load_market_set(args))))
    return 0


def _add_signature_command(commands: argparse._SubParsersAction) -> None:
    # Literal choices (= codebook_aggregator.RULES, ctr.BACKBONES): importing those modules loads TensorFlow.
    signature = commands.add_parser(
        "signature", help="type signatures of the federated processes and what crosses from markets to the server")
    signature.add_argument("--rule", choices=("usage", "mean"), default="mean",
                           help="global-codebook aggregation rule (default mean)")
    signature.add_argument("--backbone", choices=("deepfm", "dcnv2"), default="deepfm",
                           help="CTR backbone of the federated CTR process (default deepfm)")
    signature.add_argument("--anchor-slots", type=int, default=0,
                           help="anchored mode (--anchors public-items) with this many anchor slots (default 0: off)")
    add_privacy_arguments(signature, epsilon=False)  # as on run/compare
    signature.set_defaults(handler=_signature)


def _signature(args: argparse.Namespace) -> int:
    """Builds the processes (executes nothing, so no execution context) and prints the audit's view."""
    from dataclasses import replace

    from tff_fedmm.federated.privacy import PrivacyConfig, check_privacy
    from tff_fedmm.federated.signature import SIGNATURE_MARKETS, signature_report

    privacy = PrivacyConfig(args.dp_noise_multiplier, args.dp_clip, secure_agg=args.secure_agg)
    if args.dp_ctr_clip is not None:
        if not privacy.dp:
            raise UsageError("--dp-ctr-clip: only used with --dp-noise-multiplier (DP is off without it)")
        privacy = replace(privacy, ctr_clip=None if args.dp_ctr_clip == "adaptive" else args.dp_ctr_clip)
    check_privacy(privacy, args.rule, SIGNATURE_MARKETS)
    if args.anchor_slots < 0:
        raise UsageError(f"--anchor-slots: expected 0 or more, got {args.anchor_slots}")
    report, passed = signature_report(args.rule, args.backbone, privacy, anchors=args.anchor_slots)
    print(report)
    return 0 if passed else 1


def run_guarded(body: Callable[[], int]) -> int:
    """Runs a command body; user mistakes (also argparse's) become one stderr line and exit status 2."""
    try:
        return body()
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return INTERRUPTED_STATUS
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else USAGE_ERROR_STATUS
    except UsageError as err:
        message = " ".join(str(err).split())
        print(f"fedmm: error: {message}", file=sys.stderr)
        return USAGE_ERROR_STATUS


def run_command(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        return args.handler(args)

    return run_guarded(body)


@contextlib.contextmanager
def exit_at_once_on_ctrl_c() -> Iterator[None]:
    """Ctrl-C ends the command on the spot: one line, status 130.

    Not Python's KeyboardInterrupt, which is raised wherever the main thread happens to be: inside a
    garbage-collection callback (JAX registers one) Python prints it as an ignored exception, traceback
    and all, and the run carries on. Stopping at any instant is safe: every file and checkpoint is written
    under a temporary name and renamed into place, the run folder stays INCOMPLETE, and the TFF worker dies
    with this process (PR_SET_PDEATHSIG). The previous handler is restored when the command returns.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame) -> None:
        os.write(2, f"\n{INTERRUPTED}\n".encode())  # not the buffered sys.stderr: it may be mid-write
        os._exit(INTERRUPTED_STATUS)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler not installed from Python, which cannot be put back
            signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CPU features, TensorRT) is not a log a user can act on.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="fedmm: %(levelname)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices from per-round Keras models
    with exit_at_once_on_ctrl_c():
        return run_command(argv)
