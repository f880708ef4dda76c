"""`fedmm score RUN_DIR --method M --market X --pairs FILE [--backbone B]`: a market's exported CTR model
on (user, item) pairs of raw IDs (`tff_fedmm.data.pairs` reads the file, `tff_fedmm.scoring` scores).

Prints `userId itemId score` (a header, then one line per pair in file order; scores to float32 precision)
on stdout. An ID the market does not know stops the command with one line naming the file and line.
"""

from __future__ import annotations

import argparse
import sys

from tff_fedmm.errors import DataError


def add_score_command(commands: argparse._SubParsersAction) -> None:
    score = commands.add_parser("score", help="score (user, item) pairs of raw IDs with a market's exported model")
    score.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder written by fedmm run or compare")
    score.add_argument("--method", required=True, help="an exported method (exports.json), e.g. fedmm")
    score.add_argument("--market", required=True, help="the market whose model and IDs to use")
    score.add_argument("--pairs", required=True, metavar="FILE",
                       help="one 'userId itemId' pair per line, separated by whitespace, commas or tabs; a first "
                            "line with columns userId and itemId is a header (a market's data file works)")
    score.add_argument("--backbone", default=None,
                       help="deepfm or dcnv2 (default: the one backbone the method was exported on)")
    score.set_defaults(handler=_score)


def _score(args: argparse.Namespace) -> int:
    from tff_fedmm.data.pairs import read_pairs
    from tff_fedmm.scoring import load_market_model

    users, items, lines = read_pairs(args.pairs)  # before loading TensorFlow: a bad file fails at once
    model = load_market_model(args.run_dir, args.method, args.market, args.backbone)
    unknown = model.unknown(users, items)
    if unknown:
        position, entity, raw = min(unknown)
        raise DataError(f"{args.pairs}:{lines[position]}: {entity} {raw!r} is not in market {args.market!r} "
                        f"({len(unknown)} unknown ID(s) in the file); the model scores only the users and items "
                        "it was trained with")
    scores = model.score(users, items)
    out = ["userId itemId score", *(f"{u} {i} {s:.9g}" for u, i, s in zip(users, items, scores))]
    sys.stdout.write("\n".join(out) + "\n")
    return 0
