"""The `fedmm` command line.

Each subcommand is a small handler `(args) -> exit code` registered in `build_parser`. Handlers
import what they need inside their body: `fedmm --help` and data-only commands must not pay the
seconds it takes to import TensorFlow Federated. Every user mistake (bad flag, bad data) ends as one
line `fedmm: error: <message>` on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tff_fedmm.bench.command import add_bench_command
from tff_fedmm.cli_args import Parser, add_data_arguments, exit_at_once_on_ctrl_c, load_market_set, run_guarded
from tff_fedmm.cli_compare import add_compare_commands, add_privacy_arguments
from tff_fedmm.cli_score import add_score_command
from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.compare_names import BACKBONES, CODEBOOK_RULES, refusing_renamed
from tff_fedmm.worker_cli import add_worker_command


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fedmm", description="FedMM: federated multi-market CTR prediction on TensorFlow Federated.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_data_commands(commands)
    _add_signature_command(commands)
    add_compare_commands(commands)
    add_score_command(commands)
    add_bench_command(commands)
    add_worker_command(commands)
    return parser


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="inspect the markets before training")
    data_commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    summary = data_commands.add_parser("summary", help="per-market interactions, users, items and split sizes")
    add_data_arguments(summary)
    summary.set_defaults(handler=_data_summary)


def _data_summary(args: argparse.Namespace) -> int:
    from tff_fedmm.data.summary import format_summary, summarize

    print(format_summary(summarize(load_market_set(args))))
    return 0


def _add_signature_command(commands: argparse._SubParsersAction) -> None:
    signature = commands.add_parser(
        "signature", help="type signatures of the federated processes and what crosses from markets to the server")
    signature.add_argument("--rule", choices=CODEBOOK_RULES, default="fedavg",
                           type=refusing_renamed("--rule", "codebook rule"),
                           help="global-codebook aggregation rule: fedavg (default) or kmeans")
    signature.add_argument("--backbone", choices=BACKBONES, default="deepfm",
                           help="CTR backbone of the federated CTR process (default deepfm)")
    signature.add_argument("--anchor-slots", type=int, default=0,
                           help="anchored mode (--anchors public-items) with this many anchor slots (default 0: off)")
    add_privacy_arguments(signature, epsilon=False)  # as on run/compare
    signature.set_defaults(handler=_signature)


def _signature(args: argparse.Namespace) -> int:
    """Builds the processes (executes nothing, so no execution context) and prints the audit's view."""
    from dataclasses import replace

    from tff_fedmm.federated.privacy import PrivacyConfig, check_privacy
    from tff_fedmm.pipelines.signature import SIGNATURE_MARKETS, signature_report

    privacy = PrivacyConfig(args.dp_noise_multiplier, args.dp_clip, secure_agg=args.secure_agg, mode=args.dp_mode)
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




def run_command(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        return args.handler(args)

    return run_guarded(body)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="fedmm: %(levelname)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices from per-round Keras models
    with exit_at_once_on_ctrl_c():
        return run_command(argv)
