"""The CTR settings each method × backbone trains with by default, chosen on XMarket validation.

Every baseline gets the tuning budget FedMM had (issue #11): 4 variants, one setting moved from the shared
defaults in each (learning rate 3e-3, embedding size 32, patience 10), judged only by the mean over markets
of each market's best validation LogLoss (data seed 0, training seed 0). The test split is never read.

    python tasks/tune_baselines.py --data ../shared/data/xmarket-electronics \
        --methods local,fedper,centralized,fedmm --out runs/tune_baselines

A method × backbone absent here: the shared defaults won (patience 10 tied the defaults everywhere: with 20
rounds and the best round kept, stopping later never found a better one). BUILD_NOTES, "Baseline tuning",
has the table. `make_config(tuned={})` trains every method with the shared defaults.
"""

from __future__ import annotations

TUNED_CTR: dict[str, dict[str, float]] = {
    "local/deepfm": {"embed_dim": 32},
    "fedper/deepfm": {"embed_dim": 32},
    "fedper/dcnv2": {"embed_dim": 32},
    "centralized/deepfm": {"embed_dim": 32},
    "centralized/dcnv2": {"learning_rate": 3e-3},
    "fedmm/deepfm": {"embed_dim": 32},
}
# Ablations and same-access variants train with the settings of the method they derive from (unless given
# their own), so they differ from it only in what they remove or add.
DERIVED_FROM = {"local+codes": "local", "fedmm-private-codebooks": "fedmm", "fedmm-level1-only": "fedmm",
                "fedper-anchored": "fedper", "centralized-anchored": "centralized"}


def settings_for(tuned: dict[str, dict[str, float]], method: str, backbone: str) -> dict[str, float]:
    """The CTR settings `method` trains with on `backbone`: its own entry in `tuned`, else its parent's, else
    none (the shared defaults)."""
    for name in (method, DERIVED_FROM.get(method)):
        if name is not None and f"{name}/{backbone}" in tuned:
            return dict(tuned[f"{name}/{backbone}"])
    return {}
