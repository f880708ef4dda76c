"""Method and backbone names, importable without TensorFlow (the CLI validates flags with them)."""

METHODS = ("local", "local+codes", "fedavg", "fedper", "centralized", "fedmm-local-only", "fedmm-global-only",
           "fedmm")
BACKBONES = ("deepfm", "dcnv2")
# Opt-in, never in the default list: they use the public keys of items sold in several markets
# (anchored mode, `tff_fedmm.data.anchors`).
ANCHORED_METHODS = ("fedper-anchored", "centralized-anchored")
