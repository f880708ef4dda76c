"""`fedmm compare` (every method you name) and `fedmm run` (the main job: FedMM vs local vs FedAvg).

Flag parsing only: the work is `tff_fedmm.api.compare`, the function notebooks call.
"""

from __future__ import annotations

import argparse

from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.compare_names import BACKBONES, METHODS

RUN_METHODS = ["fedmm", "local", "fedavg"]


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_compare_commands(commands: argparse._SubParsersAction, add_data_arguments) -> None:
    compare = commands.add_parser("compare", help="run several methods on the same markets and compare them")
    add_data_arguments(compare)
    compare.add_argument("--methods", type=_comma_list, default=list(METHODS),
                         help=f"comma-separated, from: {', '.join(METHODS)} (default: all)")
    compare.add_argument("--backbones", type=_comma_list, default=list(BACKBONES),
                         help="comma-separated CTR backbones: deepfm, dcnv2 (default: both)")
    _add_common(compare, out_default=None)
    compare.set_defaults(handler=_compare)

    run = commands.add_parser("run", help="the main job: FedMM, local and TFF FedAvg on one backbone")
    add_data_arguments(run)
    run.add_argument("--backbone", default="deepfm", help="CTR backbone: deepfm or dcnv2 (default deepfm)")
    _add_common(run, out_default="runs/latest")
    run.set_defaults(handler=_run)

    report = commands.add_parser("report", help="Markdown tables (one per metric) of a finished run folder")
    report.add_argument("folder", help="a run folder written by run, compare or tasks/local_baseline.py")
    report.add_argument("--metrics", type=_comma_list, default=["auc", "logloss", "hr@10", "ndcg@10"],
                        help="comma-separated columns of results.csv (default auc,logloss,hr@10,ndcg@10)")
    report.set_defaults(handler=_report)


def _add_common(parser: argparse.ArgumentParser, out_default: str | None) -> None:
    parser.add_argument("--rounds", type=int, default=None,
                        help="federated rounds per stage (and max Keras epochs); default 20")
    parser.add_argument("--out", default=out_default, required=out_default is None,
                        help="run folder to write" + (f" (default {out_default})" if out_default else ""))
    parser.add_argument("--codebook-rule", default="mean", choices=("usage", "mean"),
                        help="how the global codebook is aggregated: the example-weighted mean of the markets' "
                             "codebooks (default) or per-code usage-weighted means of assigned latents")
    parser.add_argument("--cf-tower", action="store_true",
                        help="score CF with a shared interaction tower, federated across markets (embeddings "
                             "stay private) so the markets' CF spaces align")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint (same data and flags)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _run(args: argparse.Namespace) -> int:
    if args.backbone not in BACKBONES:
        raise UsageError(f"--backbone: unknown {args.backbone!r}; expected one of: {', '.join(BACKBONES)}")
    args.methods, args.backbones = RUN_METHODS, [args.backbone]
    return _compare(args)


def _compare(args: argparse.Namespace) -> int:
    from tff_fedmm import api
    from tff_fedmm.cli import load_market_set

    api.check_choices(args.methods, args.backbones, args.rounds)
    market_set = load_market_set(args)

    from tff_fedmm.report import format_table

    config = api.make_config(args.seed, args.rounds, args.codebook_rule, args.cf_tower)
    result = api.compare(market_set, args.methods, args.backbones, config, out=args.out, resume=args.resume,
                         progress=not args.quiet, command={k: v for k, v in vars(args).items() if k != "handler"})
    print(format_table(result.results, api.interactions(market_set)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from tff_fedmm.api import read_run
    from tff_fedmm.report import markdown_by_market

    run = read_run(args.folder)
    results, weights = run.results, run.config.get("interactions")
    if not weights:
        raise UsageError(f"{args.folder}/config.json records no market interactions; expected a run folder "
                         "written by fedmm run/compare or tasks/local_baseline.py")
    missing = [m for m in args.metrics if m not in results.columns]
    if missing:
        raise UsageError(f"--metrics: {missing} not in {args.folder}/results.csv; "
                         f"columns are: {', '.join(results.columns[3:])}")
    for metric in args.metrics:
        print(f"{metric}:\n\n{markdown_by_market(results, metric, weights)}\n")
    return 0
