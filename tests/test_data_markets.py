import numpy as np
import pytest
from conftest import HEADER, SHARED_DATA, valid_lines

from tff_fedmm.data.markets import load_markets
from tff_fedmm.data.summary import format_summary, summarize
from tff_fedmm.data.synthetic import SyntheticConfig
from tff_fedmm.errors import DataError

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real data not found at {SHARED_DATA}")


def test_synthetic_market_set(synthetic_set):
    assert synthetic_set.names == ["m0", "m1", "m2", "m3"] and synthetic_set.source == "synthetic"
    for name, market in synthetic_set.markets.items():
        assert synthetic_set.item_cluster[name].shape == (market.num_items,)
    pairs = synthetic_set.same_item
    assert len(pairs) and pairs["item_a"].dtype == np.int32
    clusters = synthetic_set.item_cluster
    for a, i, b, j in pairs.itertuples(index=False):
        assert clusters[a][i] == clusters[b][j]


def test_synthetic_filter_and_seed():
    subset = load_markets("synthetic", ["m2", "m0"], SyntheticConfig(seed=5))
    assert subset.names == ["m2", "m0"]
    assert set(subset.same_item["market_a"]) | set(subset.same_item["market_b"]) == {"m0", "m2"}
    with pytest.raises(DataError, match=r"no market 'de'; available markets: m0, m1, m2, m3"):
        load_markets("synthetic", ["de"])


def test_same_item_from_identical_raw_ids(market_dir):
    de = "\n".join([HEADER, *valid_lines(), "u9 shared 5.0 2020-02-01"]) + "\n"
    fr = "\n".join([HEADER, "v1 aaa 4.0 2020-01-01", "v1 shared 5.0 2020-01-02", "v1 zzz 3.0 2020-01-03"]) + "\n"
    market_set = load_markets(str(market_dir({"de_5core.txt": de, "fr_5core.txt": fr})))
    assert market_set.item_cluster is None
    ((a, i, b, j),) = market_set.same_item.itertuples(index=False)
    assert (a, b) == ("de", "fr")
    assert market_set.markets["de"].item_ids[i] == market_set.markets["fr"].item_ids[j] == "shared"
    assert summarize(market_set)["shared_items"].tolist() == [1, 1]


def test_summary_table(synthetic_set):
    df = summarize(synthetic_set)
    assert list(df.columns) == [
        "market", "rows", "interactions", "users", "items", "train", "valid", "test", "density", "shared_items"
    ]  # fmt: skip
    assert (df["train"] + df["valid"] + df["test"] == df["interactions"]).all()
    lines = format_summary(df).splitlines()
    assert lines[0].split() == list(df.columns) and len(lines) == 5
    assert len({len(line) for line in lines}) == 1  # aligned


@needs_shared_data
@pytest.mark.shared_data
def test_real_same_item_is_identical_asins():
    market_set = load_markets(str(SHARED_DATA), ["in", "jp"])
    pairs = market_set.same_item
    assert len(pairs) > 0
    ins, jps = market_set.markets["in"], market_set.markets["jp"]
    assert (ins.item_ids[pairs["item_a"]] == jps.item_ids[pairs["item_b"]]).all()
    assert len(pairs) == len(np.intersect1d(ins.item_ids, jps.item_ids))
