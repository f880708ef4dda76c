"""The names a user types (methods, backbones, codebook rules) and the old names they replaced, importable
without TensorFlow (the CLI and the tasks validate flags with them).

`RENAMED` is the one table of renames (issue #14: names that say what they do). An old name is refused
wherever it can be typed, with a one-line hint naming the new one (`refuse_renamed`); BUILD_NOTES ("Renamed
methods and options") publishes the same table. A rename changes no number.
"""

from collections.abc import Callable

from tff_fedmm.errors import UsageError

METHODS = ("local", "local+codes", "fedavg", "fedper", "centralized", "fedmm-private-codebooks", "fedmm-level1-only",
           "fedmm")
BACKBONES = ("deepfm", "dcnv2")
# Opt-in, never in the default list: they use the public keys of items sold in several markets
# (anchored mode, `tff_fedmm.data.anchors`).
ANCHORED_METHODS = ("fedper-anchored", "centralized-anchored")
# How the markets' global (level-1) codebooks become one (= `federated.codebook_aggregator.RULES`, which a
# test checks): `fedavg` averages the codebook updates the markets trained (Adam, with the RQ-VAE);
# `kmeans` is a federated k-means step (each code moves to the mean latent assigned to it).
CODEBOOK_RULES = ("fedavg", "kmeans")

# Kind of name -> {old name: new name}.
RENAMED: dict[str, dict[str, str]] = {
    # Codes from each market's own codebooks (both levels), trained as FedMM (its CTR still federates the
    # level-1 code embeddings, and the CF tower with --cf-tower): only the codebooks are not federated.
    "method": {"fedmm-local-only": "fedmm-private-codebooks",
               # The federated level-1 codebook; the private level keeps one code and the CTR reads level 1 only.
               "fedmm-global-only": "fedmm-level1-only"},
    "codebook rule": {"mean": "fedavg", "usage": "kmeans"},
    # Labels, never typed: the `codes` column of codebooks.csv and codebook_history.csv, and the codes
    # stages' checkpoint names. A label now names the codebooks and, separately, the CF stage the codes were
    # learned on: {cf} is `federated` with --cf-tower, else `local` (`code_variants.CodeVariant`).
    "code variant": {"private": "private-codebooks-local-cf", "private-fedcf": "private-codebooks-{cf}-cf",
                     "global-only": "federated-level1-codebooks-{cf}-cf", "federated": "federated-codebooks-{cf}-cf"},
}


def refuse_renamed(flag: str, kind: str, values: list[str] | tuple[str, ...] | str) -> None:
    """Raises `UsageError` naming `flag` when any of `values` is an old name of `kind` (a key of `RENAMED`)."""
    old = [v for v in ([values] if isinstance(values, str) else values) if v in RENAMED[kind]]
    if old:
        hints = ", ".join(f"{v!r} is now {RENAMED[kind][v]!r}" for v in old)
        raise UsageError(f"{flag}: {kind} renamed: {hints} (BUILD_NOTES, 'Renamed methods and options')")


def refusing_renamed(flag: str, kind: str) -> Callable[[str], str]:
    """An argparse `type` for `flag`: the value as typed, or the one-line hint for an old name of `kind`
    (argparse's `choices` then refuses any other unknown value)."""

    def parse(text: str) -> str:
        refuse_renamed(flag, kind, text)
        return text

    return parse
