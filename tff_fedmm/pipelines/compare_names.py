"""Method and backbone names, importable without TensorFlow (the CLI validates flags with them)."""

METHODS = ("local", "local+codes", "fedavg", "fedper", "centralized", "fedmm-local-only", "fedmm-global-only",
           "fedmm")
BACKBONES = ("deepfm", "dcnv2")
