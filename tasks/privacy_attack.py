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
           "recovery_a", "auc_a", "recovery_b", "auc_b", "seconds"]


def _noise_levels(text: str) -> list[float]:
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = [-1.0]
    if min(levels, default=1.0) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive noise multipliers such as 0.3,1,3 "
                                         f"(or nothing), got {text!r}")
    return levels


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
    from tff_fedmm.pipelines.codes_stage import CodesConfig, cf_inputs
    from tff_fedmm.plots import write_privacy_attack
    from tff_fedmm.run_folder import mark_complete, open_run_folder, write_csv, write_json

    _check(args)
    market_set = load_market_set(args)
    out = open_run_folder(args.out)
    write_json(out, "config.json", {"task": "privacy_attack", "data": market_set.source, "markets": market_set.names,
                                    "seed": args.seed, "seeds": args.seeds, "rounds": args.rounds,
                                    "noise": args.noise, "secure_noise": args.secure_noise,
                                    "distributed_noise": args.distributed_noise, "clip": args.dp_clip,
                                    "delta": args.dp_delta, "versions": api.versions()})
    install_execution_context()
    base = CodesConfig(rounds=args.rounds)
    inputs = cf_inputs(market_set, replace(base.cf, seed=args.seed))
    runs = protections(args.noise, args.dp_clip, args.dp_delta, args.secure_noise, args.distributed_noise)
    rows = []
    for seed in range(args.seed, args.seed + args.seeds):
        config = replace(base, codebook=replace(base.codebook, rqvae=replace(base.codebook.rqvae, seed=seed)))
        for protection in runs:
            rows.append({**measure(inputs, config, protection), "seed": seed})
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
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="privacy_attack: %(levelname)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sys.exit(main())
