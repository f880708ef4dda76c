"""`fedmm compare` (every method you name) and `fedmm run` (the main job: FedMM vs local vs FedAvg).

Flag parsing only: the work is `tff_fedmm.api.compare`, the function notebooks call.
"""

from __future__ import annotations

import argparse

from tff_fedmm.cli_args import add_data_arguments, load_market_set
from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.compare_names import ANCHORED_METHODS, BACKBONES, CODEBOOK_RULES, METHODS, refusing_renamed

RUN_METHODS = ["fedmm", "local", "fedavg"]


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_compare_commands(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="run several methods on the same markets and compare them")
    add_data_arguments(compare)
    compare.add_argument("--methods", type=_comma_list, default=list(METHODS),
                         help=f"comma-separated, from: {', '.join(METHODS)} (default: all), or the opt-in "
                              f"{', '.join(ANCHORED_METHODS)} (uses public item keys)")
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
    report.add_argument("--metrics", type=_comma_list, default=["auc", "logloss", "hr@10", "ndcg@10", "ndcg@10_full"],
                        help="comma-separated columns of results.csv (default auc,logloss,hr@10,ndcg@10,ndcg@10_full)")
    report.set_defaults(handler=_report)


def seed_list(text: str) -> list[int]:
    """An argparse type: `0,1,2` -> [0, 1, 2] (`--seeds` of compare and of the tasks)."""
    try:
        return [int(part) for part in _comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2, got {text!r}") from None


def _add_common(parser: argparse.ArgumentParser, out_default: str | None) -> None:
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=seed_list, default=None, metavar="S,S,...",
                       help="training seeds (initialisation, shuffles, drawn training negatives), run one after "
                            "another into one run folder; the evaluation candidates stay those of --data-seed")
    seeds.add_argument("--seed", type=int, default=None, help="one training seed: --seed S is --seeds S (default 0)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run up to N training seeds at once, each in its own process with its own TFF worker "
                             "(same numbers; a seed keeps about one core busy). Default 1")
    parser.add_argument("--rounds", type=int, default=None,
                        help="federated rounds per stage (and max Keras epochs); default 20")
    parser.add_argument("--out", default=out_default, required=out_default is None,
                        help="run folder to write" + (f" (default {out_default})" if out_default else ""))
    parser.add_argument("--codebook-rule", default="fedavg", choices=CODEBOOK_RULES,
                        type=refusing_renamed("--codebook-rule", "codebook rule"),
                        help="how the global codebook is aggregated: fedavg, the example-weighted mean of the "
                             "codebooks the markets trained (default), or kmeans, a federated k-means step (each "
                             "code moves to the mean of the latents assigned to it)")
    parser.add_argument("--cf-tower", action="store_true",
                        help="score CF with a shared interaction tower, federated across markets (embeddings "
                             "stay private), meant to align the markets' CF spaces (on XMarket their level-1 "
                             "codes still agree at chance: BUILD_NOTES)")
    parser.add_argument("--level1", default="encoder", choices=("encoder", "descriptors"),
                        help="what level-1 (global) codes are read from: the private encoder of CF embeddings "
                             "(default) or market-invariant descriptors (popularity, rating, calendar time), "
                             "computed inside each market; nothing new leaves a market")
    parser.add_argument("--anchors", default="none", choices=("none", "public-items"),
                        help="anchored mode: markets may use the public keys of items sold in two or more markets "
                             "(users and other items stay private); per anchor, a mean level-1 latent crosses "
                             "through the codebook aggregator. Default none (strict)")
    parser.add_argument("--anchor-weight", type=float, default=1.0,
                        help="weight of the pull of anchor items' level-1 latents toward the consensus "
                             "(with --anchors public-items; default 1.0)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint (same data and flags)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_privacy_arguments(parser)
    rounds = parser.add_argument_group("participation in every federated round")
    rounds.add_argument("--clients-per-round", type=int, default=None, metavar="K",
                        help="sample K markets per round, uniformly, seeded (default: all)")
    rounds.add_argument("--dropout-rate", type=float, default=0.0, metavar="P",
                        help="each sampled market is absent from a round with probability P, seeded (default 0); "
                             "absent markets keep their private state untouched")
    from tff_fedmm.worker_cli import worker_list
    parser.add_argument("--workers", type=worker_list, default=None, metavar="HOST:PORT,...",
                        help="run the federated computations on TFF workers started with `fedmm worker --port "
                             "PORT` (insecure gRPC: trusted network only); two or more split the markets "
                             "between them (default: one local worker)")


def add_privacy_arguments(parser: argparse.ArgumentParser, epsilon: bool = True) -> None:
    """The DP and secure-sum flags (`fedmm run/compare/signature`); `epsilon=False` (signature, which builds
    no CF process and runs nothing) leaves out `--dp-cf-clip`, `--dp-delta`, `--dp-noise-seed`, `--dp-unit` and `--dp-example-clip`."""
    privacy = parser.add_argument_group("privacy of the federated aggregations")
    privacy.add_argument("--dp-noise-multiplier", type=float, default=None, metavar="Z",
                         help="differential privacy on every federated aggregation of every method (CF tower, global "
                              "codebook, CTR shared variables): Gaussian noise of Z x clip on the sum of the markets' "
                              "clipped updates; the run reports one (epsilon, delta) per method and market covering "
                              "every stage (default: no DP)")
    privacy.add_argument("--dp-clip", type=_clip, default=None, metavar="C|adaptive",
                         help="L2 clip of a market's codebook update per round, or 'adaptive' (TFF's adaptive "
                              "clipping to the median norm; needs Z < 0.1 x markets per round). Default adaptive")
    privacy.add_argument("--dp-ctr-clip", type=_clip_or_adaptive, default=None, metavar="C|adaptive",
                         help="L2 clip of a market's CTR shared-variable update per round (default 0.5)")
    if epsilon:
        privacy.add_argument("--dp-cf-clip", type=_clip_or_adaptive, default=None, metavar="C|adaptive",
                             help="L2 clip of a market's CF tower update per round, with --cf-tower (default 2.0)")
        privacy.add_argument("--dp-delta", type=float, default=1e-5, help="the delta of the reported epsilon (1e-5)")
        privacy.add_argument("--dp-noise-seed", type=int, default=None, metavar="N",
                             help="reproducible DP noise for research: anyone with the run's settings can "
                                  "regenerate it, so it is NOT private (default: secret noise from OS entropy)")
        privacy.add_argument("--dp-unit", choices=("market", "interaction"), default="market",
                             help="what epsilon protects: one market's whole data (market, default; noise on the "
                                  "aggregations) or one interaction of one market (interaction: DP-SGD with Z as "
                                  "its noise multiplier in every market's CF and CTR training, all variables; the "
                                  "codebook stage is post-processing; the aggregations are plain means). With "
                                  "interaction, FedAvg is refused and `fedmm run` compares fedper in its place")
        privacy.add_argument("--dp-example-clip", type=float, default=None, metavar="C",
                             help="DP-SGD's L2 clip of one record's gradient (an interaction with its drawn "
                                  "negatives), with --dp-unit interaction (default 1.0)")
    privacy.add_argument("--dp-mode", choices=("central", "distributed"), default="central",
                         help="who adds the DP noise: the server after summing (central, default: the server "
                              "sees each market's clipped update) or each market, a share of discrete Gaussian "
                              "noise before a secure sum (distributed: the server sees only the noised sum; "
                              "needs a fixed --dp-clip, no --dropout-rate, no --dp-noise-seed). Distributed "
                              "noise is drawn by the markets and cannot be redrawn: a killed run resumes and "
                              "completes, but not to the numbers of an uninterrupted one")
    privacy.add_argument("--secure-agg", action="store_true",
                         help="sum the codebook aggregation with TFF's secure sum (simulated protocol, documented "
                              "fixed bounds): the server sees only sums")


def _clip(text: str) -> float | None:
    """`--dp-clip`: a positive float, or `adaptive` (None)."""
    if text == "adaptive":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'adaptive', got {text!r}") from None


def _clip_or_adaptive(text: str) -> float | str:
    """`--dp-ctr-clip`/`--dp-cf-clip`: a number, or `adaptive` (kept as text: None means not given)."""
    return "adaptive" if text == "adaptive" else _clip(text)


def _run(args: argparse.Namespace) -> int:
    if args.backbone not in BACKBONES:
        raise UsageError(f"--backbone: unknown {args.backbone!r}; expected one of: {', '.join(BACKBONES)}")
    # FedAvg's TFF client work has no per-example clipping: under DP-SGD fedper is the federated baseline.
    args.methods = [("fedper" if m == "fedavg" and args.dp_unit == "interaction" else m) for m in RUN_METHODS]
    args.backbones = [args.backbone]
    return _compare(args)


def _compare(args: argparse.Namespace) -> int:
    from tff_fedmm import api

    api.check_choices(args.methods, args.backbones, args.rounds)
    seeds = args.seeds if args.seeds is not None else [0 if args.seed is None else args.seed]
    api.check_seeds(seeds)
    api.check_jobs(args.jobs, args.workers)
    market_set = load_market_set(args)

    from tff_fedmm.pipelines import privacy_report  # loads TFF: after the flags and data are checked
    from tff_fedmm.report import format_table, markdown_intervals

    config = api.make_config(seeds[0], args.rounds, args.codebook_rule, args.cf_tower,
                             dp_noise_multiplier=args.dp_noise_multiplier, dp_clip=args.dp_clip,
                             dp_delta=args.dp_delta, secure_agg=args.secure_agg, dp_noise_seed=args.dp_noise_seed,
                             dp_ctr_clip=args.dp_ctr_clip, dp_cf_clip=args.dp_cf_clip,
                             clients_per_round=args.clients_per_round, dropout_rate=args.dropout_rate,
                             dp_mode=args.dp_mode, dp_unit=args.dp_unit, dp_example_clip=args.dp_example_clip,
                             data_seed=args.data_seed, level1=args.level1, anchors=args.anchors,
                             anchor_weight=args.anchor_weight)
    result = api.compare(market_set, args.methods, args.backbones, config, seeds=seeds, out=args.out,
                         resume=args.resume,
                         progress=not args.quiet, command={k: v for k, v in vars(args).items() if k != "handler"},
                         workers=args.workers, jobs=args.jobs)
    print(format_table(result.results, api.interactions(market_set)))
    if len(seeds) > 1:
        print("\n" + markdown_intervals(result.results, "auc"))
    for line in privacy_report.lines(result.privacy):
        print(line)
    return 0


def _report(args: argparse.Namespace) -> int:
    from tff_fedmm.api import read_run
    from tff_fedmm.report import markdown_report, markdown_summary

    run = read_run(args.folder)
    results, weights = run.results, run.config.get("interactions")
    if not weights:
        raise UsageError(f"{args.folder}/config.json records no market interactions; expected a run folder "
                         "written by fedmm run/compare or tasks/local_baseline.py")
    missing = [m for m in args.metrics if m not in results.columns]
    if missing:
        raise UsageError(f"--metrics: {missing} not in {args.folder}/results.csv; "
                         f"columns are: {', '.join(c for c in results.columns if c not in ('seed', 'method', 'backbone', 'market'))}")
    print("## Summary\n\n" + markdown_summary(results, args.metrics) + "\n")
    for metric in args.metrics:
        print(markdown_report(results, metric, weights) + "\n")
    return 0
