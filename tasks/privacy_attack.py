"""What two adversaries learn about a market from the global-codebook stage, under each protection.

    python tasks/privacy_attack.py --out runs/privacy_attack

Adversary (a), another market or the public, sees every broadcast global codebook; adversary (b), the
server, sees exactly what crosses (`tff_fedmm.federated.privacy_attack`). Each tries to name the global
codes a target market's users and items occupy when it joins (its level-1 latent clusters); the
recovery rate is the share named right, against the chance rate of a guess that knows nothing.
Protections: none, `--secure-agg`, central DP at each `--noise` multiplier, central DP with secure
summation at each `--secure-noise` multiplier, distributed DP (`--dp-mode distributed`) at each
`--distributed-noise` multiplier (fixed clip `--dp-clip`). ε is that of the codebook stage (`--rounds`
rounds) at `--dp-delta`. Every market is the target in turn; rows are means over
targets, and over `--seeds` codebook-stage seeds in the printed table (the CF stage runs once, at `--seed`).

`--anchored` runs the stage in anchored mode (`--anchors public-items`, one slot per anchor) and adds a
membership attack: for each target market and anchor slot, does the market carry that anchor? AUC over
the slots of another market reading the agreed list (`anchor_auc_list`, no training value), of (a) from
the released per-slot aggregate (`anchor_auc_a`) and of (b) from the server's view (`anchor_auc_b`),
beside the chance standard deviation (`anchor_chance_std`, 0.5 is chance). On synthetic data the markets
then get the sizes `--market-sizes` (markets of one size carry nearly the same anchors, so membership
would be void); `--items-per-market` sets the generator's item count of a full-size market.
Writes OUT/privacy_attack.csv (one row per protection and seed, rewritten after each), OUT/privacy_attack.png
and OUT/config.json, and prints the table as Markdown.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace

from tff_fedmm.cli_args import Parser, add_data_arguments, add_seed_argument, load_market_set, run_guarded
from tff_fedmm.errors import UsageError

COLUMNS = ["protection", "seed", "noise_multiplier", "epsilon", "server_view", "codes", "chance", "chance_std",
           "recovery_a", "auc_a", "recovery_b", "auc_b", "anchor_slots", "anchor_targets", "anchor_chance_std",
           "anchor_auc_list", "anchor_auc_a", "anchor_auc_b", "seconds"]
ANCHORED_SIZES = "1,0.8,0.6,0.4"  # default --market-sizes under --anchored on synthetic data


def _noise_levels(text: str) -> list[float]:
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = [-1.0]
    if min(levels, default=1.0) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive noise multipliers such as 0.3,1,3 "
                                         f"(or nothing), got {text!r}")
    return levels


def _sizes(text: str) -> tuple[float, ...]:
    try:
        sizes = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive size factors such as 1,0.5, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="privacy_attack", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    add_seed_argument(parser)
    parser.add_argument("--seeds", type=int, default=3, help="codebook-stage seeds from --seed on (default 3)")
    parser.add_argument("--noise", type=_noise_levels, default=[0.1, 0.3, 1.0, 3.0, 10.0], metavar="Z,Z,...",
                        help="central DP noise multipliers (default 0.1,0.3,1,3,10; \"\" for none)")
    parser.add_argument("--secure-noise", type=_noise_levels, default=[1.0], metavar="Z,Z,...",
                        help="central DP noise multipliers run with secure summation too (default 1; \"\" for none)")
    parser.add_argument("--distributed-noise", type=_noise_levels, default=[0.1, 0.3, 1.0, 3.0, 10.0],
                        metavar="Z,Z,...",
                        help="distributed DP noise multipliers (default 0.1,0.3,1,3,10; \"\" for none)")
    parser.add_argument("--dp-clip", type=float, default=0.3, help="fixed L2 clip of a market's update (0.3)")
    parser.add_argument("--dp-delta", type=float, default=1e-5, help="delta of the reported epsilon (1e-5)")
    parser.add_argument("--rounds", type=int, default=3, help="codebook rounds per run (default 3)")
    parser.add_argument("--anchored", action="store_true",
                        help="anchored mode, with the membership attack on anchor items (new columns)")
    parser.add_argument("--market-sizes", type=_sizes, default=None, metavar="F,F,...",
                        help=f"synthetic data: one size factor per market (default {ANCHORED_SIZES} with "
                             "--anchored, else equal sizes)")
    parser.add_argument("--items-per-market", type=int, default=None,
                        help="synthetic data: items of a full-size market (default: the generator's)")
    parser.add_argument("--out", required=True, help="folder for privacy_attack.csv/.png and config.json")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def _check(args: argparse.Namespace) -> None:
    if args.seeds < 1:
        raise UsageError(f"--seeds: expected 1 or more, got {args.seeds}")
    if args.rounds < 1:
        raise UsageError(f"--rounds: expected 1 or more, got {args.rounds}")
    if args.dp_clip <= 0:
        raise UsageError(f"--dp-clip: expected a positive L2 norm, got {args.dp_clip}")
    if not 0 < args.dp_delta < 1:
        raise UsageError(f"--dp-delta: expected a number in (0, 1), got {args.dp_delta}")
    if args.data != "synthetic" and (args.market_sizes or args.items_per_market):
        raise UsageError("--market-sizes and --items-per-market shape synthetic data only; drop them with --data DIR")
    if args.items_per_market is not None and args.items_per_market < 1:
        raise UsageError(f"--items-per-market: expected 1 or more, got {args.items_per_market}")


def _markets(args: argparse.Namespace):
    """The markets (`--data` as every command loads it, synthetic markets shaped by the sizes options)
    and, for synthetic data, the generator's shape to record."""
    from dataclasses import asdict

    from tff_fedmm.data.markets import load_markets
    from tff_fedmm.data.synthetic import SyntheticConfig

    if args.data != "synthetic":
        return load_market_set(args), None
    sizes = args.market_sizes or (_sizes(ANCHORED_SIZES) if args.anchored else ())
    shape = {"seed": args.data_seed, "market_sizes": sizes}
    if sizes:
        shape["num_markets"] = len(sizes)
    if args.items_per_market is not None:
        shape["items_per_market"] = args.items_per_market
    config = SyntheticConfig(**shape)
    recorded = {k: v for k, v in asdict(config).items()
                if k in ("num_markets", "users_per_market", "items_per_market", "market_sizes")}
    return load_markets(args.data, args.markets, config), recorded


def summary(table):
    """Means over seeds per protection, in the order the protections ran."""
    numeric = [c for c in COLUMNS if c not in ("protection", "seed", "server_view")]
    grouped = table.groupby(["protection", "server_view"], sort=False)[numeric].mean().reset_index()
    return grouped.assign(seeds=table.groupby(["protection", "server_view"], sort=False).size().to_numpy())


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from tff_fedmm import api
    from tff_fedmm.federated.context import install_execution_context
    from tff_fedmm.pipelines.attack_trace import measure, protections
    from tff_fedmm.pipelines.codes_stage import CodesConfig, anchored, cf_inputs
    from tff_fedmm.plots import write_privacy_attack
    from tff_fedmm.run_folder import mark_complete, open_run_folder, write_csv, write_json

    _check(args)
    market_set, synthetic = _markets(args)
    base = CodesConfig(rounds=args.rounds, anchors="public-items" if args.anchored else "none",
                       data_seed=args.data_seed)
    base, slots = anchored(market_set, base, federated=True)
    if args.anchored and slots is None:
        raise UsageError("--anchored: these markets share no item, so there is no anchor to attack")
    out = open_run_folder(args.out)
    write_json(out, "config.json", {"task": "privacy_attack", "data": market_set.source, "markets": market_set.names,
                                    "synthetic": synthetic, "seed": args.seed,
                                    "seeds": args.seeds, "rounds": args.rounds, "noise": args.noise,
                                    "secure_noise": args.secure_noise, "distributed_noise": args.distributed_noise,
                                    "clip": args.dp_clip, "delta": args.dp_delta, "anchored": args.anchored,
                                    "anchor_slots": base.codebook.anchors, "versions": api.versions()})
    install_execution_context()
    inputs = cf_inputs(market_set, replace(base.cf, seed=args.seed))
    runs = protections(args.noise, args.dp_clip, args.dp_delta, args.secure_noise, args.distributed_noise)
    rows = []
    for seed in range(args.seed, args.seed + args.seeds):
        config = replace(base, codebook=replace(base.codebook, rqvae=replace(base.codebook.rqvae, seed=seed)))
        for protection in runs:
            rows.append({**measure(inputs, config, protection, slots), "seed": seed})
            if not args.quiet:
                print(f"[{len(rows)}/{len(runs) * args.seeds}] seed {seed}: {protection.name}", file=sys.stderr,
                      flush=True)
            write_csv(out, "privacy_attack.csv", pd.DataFrame(rows, columns=COLUMNS))
    table = summary(pd.DataFrame(rows, columns=COLUMNS))
    write_privacy_attack(table, out / "privacy_attack.png")
    mark_complete(out)
    print(markdown(table))
    return 0


def markdown(table) -> str:
    table = table.dropna(axis=1, how="all")  # the anchored columns of a run without --anchored
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="privacy_attack: %(levelname)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sys.exit(main())
