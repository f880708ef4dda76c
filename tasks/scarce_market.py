"""Where data is scarce: the target market keeps a share of its training interactions, the others all.

    python tasks/scarce_market.py --data ../shared/data/xmarket-electronics --target jp \
        --fractions 0.1,0.25,0.5,1.0 --seeds 0,1,2 --out runs/scarce

For each fraction the target market's train split is thinned (`tff_fedmm.data.scarce`: seeded by the data
seed, nested across fractions, valid/test and every evaluation candidate untouched, users left with nothing
stay as cold users) and `local`, `fedper`, the anchored baselines (`fedper-anchored`,
`centralized-anchored`) and FedMM in each of its modes (`--fedmm-modes`: strict `encoder` is `fedmm`,
`anchored` is `--anchors public-items` with `--anchor-weight`, another level-1 mode M is `fedmm[M]`) run
on the paired `--seeds` through `tff_fedmm.api.compare`, up to `--jobs` seeds at once, one run folder per
fraction and mode under OUT. OUT/scarce.csv holds the target market's test metrics per fraction, method,
backbone and seed (`auc_held_out`: on the recurring items never used as anchors); OUT/scarce_summary.csv
per metric (`auc`, `auc_held_out`) the mean and 95% t-interval over seeds, and the paired difference to
`local`; OUT/scarce_auc.png plots test AUC against the fraction with the intervals as bands. Every
market's rows go to OUT/scarce_all.csv and, per fraction, the README-style summary over all markets (paired
differences to `local` and `fedper`) to OUT/scarce_all.md. `--resume` continues a killed sweep (finished
stages are read back from each run folder's checkpoints).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from tff_fedmm.cli_args import Parser, add_data_arguments, load_market_set, run_guarded
from tff_fedmm.cli_compare import seed_list

METRICS = ["auc", "auc_held_out", "logloss", "ndcg@10_full", "hr@10_full"]
MODES = ("encoder", "descriptors", "anchored")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="scarce_market", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--target", required=True, help="the market whose training data is thinned")
    parser.add_argument("--fractions", type=_fractions, default=[0.1, 0.25, 0.5, 1.0], metavar="F,F,...",
                        help="shares of the target's training interactions kept (default 0.1,0.25,0.5,1.0)")
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2], metavar="S,S,...",
                        help="paired training seeds (default 0,1,2)")
    parser.add_argument("--methods", type=_names,
                        default=["local", "fedper", "fedper-anchored", "centralized-anchored", "fedmm"],
                        help="comma-separated methods (default local,fedper,fedper-anchored,centralized-anchored,fedmm)")
    parser.add_argument("--fedmm-modes", type=_names, default=["encoder", "anchored"],
                        help=f"FedMM modes to run, from {', '.join(MODES)} (default encoder,anchored)")
    parser.add_argument("--anchor-weight", type=float, default=1.0,
                        help="the anchored mode's pull weight (default 1.0)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="seeds run at once, one process each (default: the number of cores)")
    parser.add_argument("--backbones", type=_names, default=["deepfm"])
    parser.add_argument("--rounds", type=int, default=None, help="rounds / epochs per stage (default 20)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed sweep in OUT from its checkpoints (refused if data or flags changed)")
    parser.add_argument("--out", required=True)
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated shares such as 0.1,0.5,1, got {text!r}") from None


def _runs(methods: list[str], modes: list[str]) -> list[tuple[str, list[str], str]]:
    """(level-1 mode, methods run in it, label of its fedmm rows): the baselines run once, in the first."""
    runs, others = [], [m for m in methods if m != "fedmm"]
    for i, mode in enumerate(modes if "fedmm" in methods else modes[:1]):
        chosen = (others if i == 0 else []) + (["fedmm"] if "fedmm" in methods else [])
        runs.append((mode, chosen, "fedmm" if mode == "encoder" else f"fedmm[{mode}]"))
    return [run for run in runs if run[1]]


def _run(args) -> int:
    import pandas as pd

    from tff_fedmm import api
    from tff_fedmm.data.scarce import thin_training
    from tff_fedmm.errors import UsageError
    from tff_fedmm.eval.seed_stats import paired_differences, summary
    from tff_fedmm.plots import write_scarce_market
    from tff_fedmm.report import markdown_summary
    from tff_fedmm.run_folder import mark_complete, open_run_folder, write_csv, write_text

    if not args.fedmm_modes or any(mode not in MODES for mode in args.fedmm_modes):
        raise UsageError(f"--fedmm-modes: expected a comma-separated list from: {', '.join(MODES)}")
    for fraction in args.fractions:
        if not 0 < fraction <= 1:
            raise UsageError(f"--fractions: expected shares in (0, 1], got {fraction}")
    api.check_choices(args.methods, args.backbones, args.rounds)
    api.check_seeds(args.seeds)
    api.check_jobs(args.jobs, None)
    market_set = load_market_set(args)
    if args.target not in market_set.markets:
        raise UsageError(f"--target: {args.target!r} is not among the markets ({', '.join(market_set.names)})")
    out = open_run_folder(args.out)
    rows, everywhere = [], []
    for fraction in args.fractions:
        thinned = thin_training(market_set.markets[args.target], fraction, args.data_seed)
        markets = replace(market_set, markets={**market_set.markets, args.target: thinned})
        for mode, methods, label in _runs(args.methods, args.fedmm_modes):
            anchored = mode == "anchored"
            config = api.make_config(args.seeds[0], args.rounds, data_seed=args.data_seed,
                                     level1="encoder" if anchored else mode,
                                     anchors="public-items" if anchored else "none", anchor_weight=args.anchor_weight)
            result = api.compare(markets, methods, args.backbones, config, seeds=args.seeds, jobs=args.jobs,
                                 out=out / f"fraction-{fraction:g}" / mode, progress=False, resume=args.resume)
            labelled = result.results.assign(fraction=fraction, method=result.results["method"].replace("fedmm", label))
            everywhere.append(labelled)
            rows.append(labelled[labelled["market"] == args.target])
            print(f"scarce_market: fraction {fraction:g}, {mode}: {', '.join(methods)} done", file=sys.stderr)
    table = pd.concat(rows, ignore_index=True)[["fraction", "method", "backbone", "seed", *METRICS]]
    write_csv(out, "scarce.csv", table)
    per_fraction = []
    for fraction, part in table.groupby("fraction", sort=True):
        frame = part.assign(market=args.target)
        for metric in ("auc", "auc_held_out"):
            stats = summary(frame, metric).query("market == 'mean'").drop(columns="market")
            if "local" in set(part["method"]):
                diff = paired_differences(frame, metric, "local").query("market == 'mean'")
                stats = stats.merge(diff[["method", "backbone", "mean", "ci", "verdict"]].rename(
                    columns={"mean": "diff_vs_local", "ci": "diff_ci"}), on=["method", "backbone"], how="left")
            per_fraction.append(stats.assign(fraction=fraction, metric=metric))
    stats = pd.concat(per_fraction, ignore_index=True)
    write_csv(out, "scarce_summary.csv", stats)
    write_scarce_market(stats[stats["metric"] == "auc"], out / "scarce_auc.png", args.target)
    every = pd.concat(everywhere, ignore_index=True)
    write_csv(out, "scarce_all.csv", every)
    write_text(out, "scarce_all.md", "\n\n".join(
        f"## Fraction {fraction:g} of {args.target}'s training data (all markets)\n\n"
        + markdown_summary(every[every["fraction"] == fraction], ["auc", "auc_held_out", "logloss", "ndcg@10_full"])
        for fraction in sorted(set(every["fraction"]))) + "\n")
    mark_complete(out)
    print(stats.round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
