"""Level-1 alignment against chance, per market pair, for codebook settings: the quick loop of issue #12.

    python tasks/alignment_probe.py --data ../shared/data/xmarket-electronics --markets de,fr \
        --variants cf,inputs:3,level1:1 --rounds 20

Runs only the CF stage (once) and the federated codebook stage (once per variant), then prints, for
every pair of markets sharing items, how often a shared item gets the same level-1 code in both, the
chance rate, and their ratio, then all pairs pooled (`all`). Variants: `cf` (CF embeddings only, the old input), `inputs:W`
(descriptors × W appended to the encoder input), `level1:W` (the same input, and level 1 quantizes
the descriptors' fixed anchor latent). `shuffled` rows are the control: each market's codes permuted
over its items, which must sit at chance. Raw item IDs are read only to score alignment.

`--anchors public-items` runs the encoder variants (`cf`, `inputs:W`) in anchored mode
(`tff_fedmm.data.anchors`), once per pull weight of `--anchor-weight` (a comma-separated list; 0 sends
the aggregates but pulls nothing: the control, which must match strict mode). Every variant is scored on two item sets
(column `items`): `all` recurring items, and `held-out`, the recurring items that are never anchors (the
split of `--data-seed`, so strict and anchored runs are scored on the same items). Anchored mode is
judged on `held-out`: it was told nothing about those items.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from tff_fedmm.cli_args import Parser, add_data_arguments, add_seed_argument, load_market_set, run_guarded
from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.compare_names import CODEBOOK_RULES, refusing_renamed


def _variants(text: str) -> list[tuple[str, float, bool]]:
    """(name, descriptor weight, level 1 on descriptors) per comma-separated variant."""
    out = []
    for name in (v.strip() for v in text.split(",") if v.strip()):
        kind, _, weight = name.partition(":")
        try:
            value = float(weight) if kind != "cf" else 0.0
        except ValueError:
            value = -1.0
        if kind not in ("cf", "inputs", "level1") or value < 0 or (kind != "cf" and value == 0):
            raise UsageError(f"--variants: {name!r} is not cf, inputs:W or level1:W with a weight W > 0")
        out.append((name, value, kind == "level1"))
    if not out:
        raise UsageError("--variants: expected a comma-separated list such as cf,inputs:3,level1:1")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="alignment_probe", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    add_seed_argument(parser)  # main's probe read args.seed without defining --seed
    parser.add_argument("--variants", default="cf,level1:1", help="cf, inputs:W, level1:W (default cf,level1:1)")
    parser.add_argument("--rounds", type=int, default=20, help="codebook rounds (default 20)")
    parser.add_argument("--k-global", type=int, default=64, help="global codebook size (default 64)")
    parser.add_argument("--rule", default="fedavg", choices=CODEBOOK_RULES,
                        type=refusing_renamed("--rule", "codebook rule"), help="codebook rule (default fedavg)")
    parser.add_argument("--anchors", default="none", choices=("none", "public-items"),
                        help="anchored mode for the encoder variants (default none)")
    parser.add_argument("--anchor-weight", default="1",
                        help="weights of the pull toward the anchor consensus, comma-separated (default 1)")
    parser.add_argument("--anchor-slots", type=int, default=None,
                        help="hash the anchors into this many slots (default: one slot per anchor)")
    parser.add_argument("--out", help="also write the table to this CSV file")
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def _run(args) -> int:
    import numpy as np
    import pandas as pd

    from tff_fedmm.data.anchors import held_out_pairs, public_anchors
    from tff_fedmm.data.descriptors import entity_descriptors
    from tff_fedmm.eval.alignment import pairwise_alignment
    from tff_fedmm.federated.context import install_execution_context
    from tff_fedmm.models.cf import CFConfig, embedding_tables, rqvae_input_dim, rqvae_inputs
    from tff_fedmm.training.cf import train_cf
    from tff_fedmm.pipelines.codes_stage import CodesConfig, learn_codes

    variants = _variants(args.variants)
    if args.rounds < 1:
        raise UsageError(f"--rounds: expected 1 or more, got {args.rounds}")
    weights = _weights(args.anchor_weight) if args.anchors != "none" else [None]
    if args.anchor_slots is not None and args.anchor_slots < 1:
        raise UsageError(f"--anchor-slots: expected 1 or more, got {args.anchor_slots}")
    if args.anchors != "none" and any(level1 for _, _, level1 in variants):
        raise UsageError("--anchors public-items pulls the encoder's level-1 latents: use it with cf or inputs:W "
                         "variants, not level1:W")
    install_execution_context()
    market_set = load_market_set(args)
    base = CodesConfig(rounds=args.rounds, anchors=args.anchors, data_seed=args.data_seed,
                       anchor_max_slots=args.anchor_slots)
    # --seed also seeds CF and the RQ-VAE, as make_config does
    base = replace(base, cf=replace(base.cf, seed=args.seed),
                   codebook=replace(base.codebook, rqvae=replace(base.codebook.rqvae, seed=args.seed)))
    item_sets = {"all": market_set.same_item,
                 "held-out": held_out_pairs(market_set, public_anchors(market_set, args.data_seed))}
    tables = {n: embedding_tables(train_cf(m, base.cf)) for n, m in market_set.markets.items()}
    descriptors = {n: entity_descriptors(m) for n, m in market_set.markets.items()}
    rows, rng = [], np.random.default_rng(0)
    for (name, weight, level1), pull in ((v, w) for v in variants for w in weights):
        cf = replace(base.cf, descriptors=weight)
        rq = replace(base.codebook.rqvae, input_dim=rqvae_input_dim(cf), k_global=args.k_global,
                     descriptor_dim=rqvae_input_dim(cf) - cf.dim - 2 if level1 else 0)
        config = replace(base, cf=cf, codebook=replace(base.codebook, rule=args.rule, rqvae=rq,
                                                       anchor_weight=pull or 0.0))
        inputs = {n: rqvae_inputs(*t, descriptors=descriptors[n] if weight > 0 else None, weight=weight)
                  for n, t in tables.items()}
        codes = learn_codes(market_set, config, federated=True, inputs=inputs).codes
        items = {n: c.item_global for n, c in codes.items()}
        shuffled = {n: rng.permutation(c) for n, c in items.items()}
        label = f"{name} anchored:{pull:g}" if pull is not None else name
        for variant, table in ((label, items), (f"{label} shuffled", shuffled)):
            for item_set, same_item in item_sets.items():
                pairs = pairwise_alignment(same_item, table, args.k_global)
                rows.extend({"variant": variant, "items": item_set, **row} for row in pairs)
                rows.append({"variant": variant, "items": item_set, **_pooled(pairs)})
                print(pd.DataFrame(rows[-len(pairs) - 1:]).round(4).to_string(index=False), flush=True)
    frame = pd.DataFrame(rows)
    print(frame.round(4).to_string(index=False))
    if args.out:
        frame.to_csv(args.out, index=False)
    return 0


def _weights(text: str) -> list[float]:
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        weights = []
    if not weights or min(weights) < 0:
        raise UsageError(f"--anchor-weight: expected comma-separated weights >= 0 such as 0,1,5, got {text!r}")
    return weights


def _pooled(pairs: list[dict]) -> dict:
    """Every pair's items together: pair-weighted agreement and chance."""
    n = sum(p["pairs"] for p in pairs)
    if n == 0:
        return {"market_a": "all", "market_b": "all", "pairs": 0, "agreement": float("nan"),
                "chance": float("nan"), "ratio": float("nan")}
    agreement = sum(p["agreement"] * p["pairs"] for p in pairs) / n
    chance = sum(p["chance"] * p["pairs"] for p in pairs) / n
    return {"market_a": "all", "market_b": "all", "pairs": n, "agreement": agreement, "chance": chance,
            "ratio": agreement / chance}


if __name__ == "__main__":
    sys.exit(main())
