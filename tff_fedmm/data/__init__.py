"""Data layer: load or generate markets, split them, sample negatives, build tf.data pipelines.

`to_dataset` is re-exported lazily: importing TensorFlow takes seconds, and loading or summarising
data must not pay for it.
"""

from tff_fedmm.data.loading import RawMarket, find_market_files, load_market_dir
from tff_fedmm.data.markets import MarketSet, load_markets
from tff_fedmm.data.sampling import ctr_examples, ranking_sets
from tff_fedmm.data.splits import Market, prepare_market
from tff_fedmm.data.summary import format_summary, summarize
from tff_fedmm.data.synthetic import SyntheticConfig, SyntheticData, generate_synthetic

__all__ = [
    "Market",
    "MarketSet",
    "RawMarket",
    "SyntheticConfig",
    "SyntheticData",
    "ctr_examples",
    "find_market_files",
    "format_summary",
    "generate_synthetic",
    "load_market_dir",
    "load_markets",
    "prepare_market",
    "ranking_sets",
    "summarize",
]  # to_dataset is left out so `import *` never pulls in TensorFlow


def __getattr__(name: str) -> object:
    if name == "to_dataset":
        from tff_fedmm.data.pipelines import to_dataset

        return to_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
