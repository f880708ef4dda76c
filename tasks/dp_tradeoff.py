"""FedMM's test AUC against its ε under DP, over several noise levels and both units of privacy.

    python tasks/dp_tradeoff.py --data ../shared/data/xmarket-electronics --out runs/dp
    python tasks/dp_tradeoff.py --dp-unit market,interaction --noise 1,3 --out runs/dp_units

Runs `fedmm` on one backbone once without DP and once per noise multiplier Z (fixed L2 clip `--dp-clip`,
the same seed and data), each as `fedmm compare --methods fedmm --dp-noise-multiplier Z --dp-clip C` in a
process of its own (run folders OUT/no_dp, OUT/z<Z>); `global_usage` is the mean over markets of the fraction
of global codes in use. DP covers every federated stage of FedMM (the codebook with clip `--dp-clip`, the CTR
stage's shared embeddings with the default `--dp-ctr-clip`); ε is the largest over markets of FedMM's ε at
`--dp-delta`, composed over every stage and round (`tff_fedmm.pipelines.privacy_report`).
With `--dp-unit interaction` the same noise multipliers drive DP-SGD instead (`--dp-unit interaction
--dp-example-clip C`, folders OUT/interaction_z<Z>): ε is then per interaction of a market, not per market.
Writes OUT/dp_tradeoff.csv (rewritten after every run), OUT/dp_tradeoff.png and OUT/config.json, and
prints the table as Markdown.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from tff_fedmm.cli_args import Parser, add_data_arguments, add_seed_argument, load_market_set, run_guarded
from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.compare_names import BACKBONES

UNITS = ("market", "interaction")
COLUMNS = ["unit", "noise_multiplier", "clip", "epsilon", "delta", "rounds", "auc_mean", "auc_weighted_mean",
           "logloss_mean", "global_usage", "seconds"]


def _noise_levels(text: str) -> list[float]:
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive noise multipliers such as 0.5,1,2, "
                                         f"got {text!r}")
    return levels


def _units(text: str) -> list[str]:
    units = [part.strip() for part in text.split(",") if part.strip()]
    if not units or any(u not in UNITS for u in units):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list from {', '.join(UNITS)}, got {text!r}")
    return units


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="dp_tradeoff", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    add_seed_argument(parser)
    parser.add_argument("--noise", type=_noise_levels, default=[0.1, 0.3, 1.0, 3.0], metavar="Z,Z,...",
                        help="noise multipliers (default 0.1,0.3,1,3); a run without DP is always added")
    parser.add_argument("--dp-clip", type=float, default=0.3, help="fixed L2 clip of a market's update (0.3)")
    parser.add_argument("--dp-unit", type=_units, default=["market"], metavar="UNIT,...",
                        help="market (noise on the aggregations), interaction (DP-SGD), or both: market,interaction")
    parser.add_argument("--dp-example-clip", type=float, default=1.0,
                        help="DP-SGD's per-record L2 clip with --dp-unit interaction (1.0)")
    parser.add_argument("--dp-delta", type=float, default=1e-5, help="delta of the reported epsilon (1e-5)")
    parser.add_argument("--backbone", default="deepfm", help="CTR backbone: deepfm or dcnv2 (default deepfm)")
    parser.add_argument("--rounds", type=int, default=None, help="federated rounds per stage (default 20)")
    parser.add_argument("--out", required=True, help="folder for dp_tradeoff.csv/.png and config.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def summary_row(results, weights: dict[str, int]) -> dict:
    """Mean and interaction-weighted mean test AUC, mean LogLoss, of one method's per-market results."""
    from tff_fedmm.eval.metrics import summarize_markets

    summary = summarize_markets(results[["market", "auc", "logloss"]], weights).set_index("market")
    return {"auc_mean": float(summary.loc["mean", "auc"]), "auc_weighted_mean": float(summary.loc["weighted_mean", "auc"]),
            "logloss_mean": float(summary.loc["mean", "logloss"])}


def markdown(table) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _compare_in_fresh_process(args: argparse.Namespace, z: float | None, folder, unit: str = "market"):
    """`fedmm compare --methods fedmm ...` in its own process, its run folder read back.

    One process per noise level, so that each level's result is exactly what `fedmm compare` gives alone:
    a FedMM result once depended on what ran before it in the same process (TensorFlow's global seed
    entered the codebook stage's shuffles; fixed in `codes_stage`, see BUILD_NOTES "Fixed: a FedMM result
    depended on what ran before it"), and separate processes keep any such coupling out of the table.
    """
    import subprocess

    from tff_fedmm.api import read_run

    command = [sys.executable, "-m", "tff_fedmm", "compare", "--methods", "fedmm", "--backbones", args.backbone,
               "--data", args.data, "--seed", str(args.seed), "--data-seed", str(args.data_seed), "--out", str(folder), "--quiet"]
    command += ["--markets", ",".join(args.markets)] if args.markets else []
    command += ["--rounds", str(args.rounds)] if args.rounds else []
    if z is not None:
        # Reproducible noise (not private) so the table can be regenerated; secret noise has the same law.
        command += ["--dp-noise-multiplier", str(z), "--dp-delta", str(args.dp_delta), "--dp-noise-seed", str(args.seed),
                    "--dp-unit", unit]
        command += (["--dp-example-clip", str(args.dp_example_clip)] if unit == "interaction" else
                    ["--dp-clip", str(args.dp_clip)])
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return read_run(folder)


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from tff_fedmm import api
    from tff_fedmm.plots import write_privacy_tradeoff
    from tff_fedmm.run_folder import mark_complete, open_run_folder, write_csv, write_json

    if args.backbone not in BACKBONES:
        raise UsageError(f"--backbone: expected one of {', '.join(BACKBONES)}, got {args.backbone!r}")
    if args.dp_clip <= 0:
        raise UsageError(f"--dp-clip: expected a positive L2 norm, got {args.dp_clip}")
    api.check_choices(["fedmm"], [args.backbone], args.rounds)
    market_set = load_market_set(args)
    weights = api.interactions(market_set)
    out = open_run_folder(args.out)
    write_json(out, "config.json", {"task": "dp_tradeoff", "data": market_set.source, "markets": market_set.names,
                                    "backbone": args.backbone, "seed": args.seed, "rounds": args.rounds,
                                    "noise": args.noise, "clip": args.dp_clip, "delta": args.dp_delta,
                                    "units": args.dp_unit, "example_clip": args.dp_example_clip,
                                    "versions": api.versions()})
    rows = []
    levels = [("none", None)] + [(unit, z) for unit in args.dp_unit for z in args.noise]
    for i, (unit, z) in enumerate(levels, 1):
        if not args.quiet:
            print(f"[{i}/{len(levels)}] {unit} noise multiplier {z or 'none (no DP)'}", file=sys.stderr, flush=True)
        started = time.monotonic()
        folder = "no_dp" if z is None else f"z{z:g}" if unit == "market" else f"interaction_z{z:g}"
        run = _compare_in_fresh_process(args, z, out / folder, unit)
        privacy = run.config["privacy"].get("methods", {}).get("fedmm", {}).get("epsilon", {})
        clip = args.dp_clip if unit == "market" else args.dp_example_clip
        rows.append({"unit": unit, "noise_multiplier": z or 0.0, "clip": clip if z else float("nan"),
                     "epsilon": max(privacy.values()) if privacy else float("inf"), "delta": args.dp_delta,
                     "rounds": run.config["config"]["ctr"]["rounds"] if z else 0, **summary_row(run.results, weights),
                     "global_usage": float(run.codebooks["global_usage"].mean()),
                     "seconds": round(time.monotonic() - started, 1)})
        write_csv(out, "dp_tradeoff.csv", pd.DataFrame(rows, columns=COLUMNS))
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_privacy_tradeoff(table, out / "dp_tradeoff.png")
    mark_complete(out)
    print(markdown(table))
    return 0


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="dp_tradeoff: %(levelname)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sys.exit(main())
