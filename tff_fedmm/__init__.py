"""tff_fedmm: FedMM (federated collaborative signal quantization for multi-market CTR) on TensorFlow Federated.

The Python API, for notebooks and scripts (the `fedmm` command uses the same functions):

    from tff_fedmm import load_markets, make_config, compare, read_run
    from tff_fedmm import load_market_model, encode   # a finished run's exported models and codebooks

Names are resolved lazily: `import tff_fedmm` does not import TensorFlow. It does keep TensorFlow's C++
start-up noise off the terminal when TensorFlow is imported later (`tff_fedmm.quiet_tf`).
"""

from tff_fedmm import quiet_tf

quiet_tf.install()

_EXPORTS = {
    "load_markets": "tff_fedmm.data.markets",
    "MarketSet": "tff_fedmm.data.markets",
    "SyntheticConfig": "tff_fedmm.data.synthetic",
    "summarize": "tff_fedmm.data.summary",
    "make_config": "tff_fedmm.api",
    "compare": "tff_fedmm.api",
    "run_method": "tff_fedmm.api",
    "read_run": "tff_fedmm.api",
    "RunFolder": "tff_fedmm.api",
    "load_market_model": "tff_fedmm.scoring",
    "MarketModel": "tff_fedmm.scoring",
    "encode": "tff_fedmm.scoring",
    "CompareConfig": "tff_fedmm.pipelines.compare",
    "CompareResult": "tff_fedmm.pipelines.compare",
    "METHODS": "tff_fedmm.pipelines.compare_names",
    "BACKBONES": "tff_fedmm.pipelines.compare_names",
    "install_execution_context": "tff_fedmm.federated.context",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
