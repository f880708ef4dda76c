import logging

import numpy as np
import pytest
from conftest import HEADER, valid_lines

from tff_fedmm.data.loading import find_market_files, load_market_dir
from tff_fedmm.errors import DataError


def text(header: str, lines: list[str]) -> str:
    return "\n".join([header, *lines]) + "\n"


@pytest.mark.parametrize("sep", [" ", "\t", ","])
def test_separators_are_sniffed_from_the_header(market_dir, sep):
    lines = [sep.join(line.split()) for line in valid_lines()]
    raw = load_market_dir(market_dir({"de_5core.txt": text(sep.join(HEADER.split()), lines)}))["de"]
    assert list(raw.frame.columns) == ["userId", "itemId", "rate", "date"]
    assert raw.frame["userId"].tolist() == [line.split()[0] for line in valid_lines()]  # file order
    assert raw.frame["rate"].dtype == np.float32
    assert raw.frame["date"].dtype == "datetime64[ns]"
    assert raw.duplicates_dropped == 0


def test_columns_may_come_in_any_order(market_dir):
    lines = [" ".join(np.array(line.split())[[3, 2, 1, 0]]) for line in valid_lines()]
    raw = load_market_dir(market_dir({"de_5core.txt": text("date rate itemId userId", lines)}))["de"]
    assert raw.frame["itemId"].iloc[0] == valid_lines()[0].split()[1]


def test_duplicates_are_dropped_counted_and_logged(market_dir, caplog):
    lines = valid_lines()
    data = market_dir({"de_5core.txt": text(HEADER, lines + lines[:2])})
    with caplog.at_level(logging.WARNING):
        raw = load_market_dir(data)["de"]
    assert raw.duplicates_dropped == 2
    assert len(raw.frame) == len(lines)
    assert "dropped 2 duplicate" in caplog.text


def test_xmarket_files_win_over_other_text_files(market_dir):
    body = text(HEADER, valid_lines())
    data = market_dir({"de_5core.txt": body, "fr_5core.txt": body, "README.txt": "notes", ".hidden.txt": ""})
    assert list(find_market_files(data)) == ["de", "fr"]


def test_other_suffixes_name_the_market_by_stem(market_dir):
    body = text(HEADER, valid_lines())
    data = market_dir({"us.ratings.csv": body.replace(" ", ","), "br_2020.tsv": body.replace(" ", "\t")})
    assert list(find_market_files(data)) == ["br", "us"]
    assert list(load_market_dir(data)) == ["br", "us"]


def test_two_files_for_one_market_are_ambiguous(market_dir):
    body = text(HEADER, valid_lines())
    with pytest.raises(DataError, match="two files"):
        find_market_files(market_dir({"de_a.txt": body, "de_b.csv": body}))


def test_markets_selects_and_orders(market_dir):
    body = text(HEADER, valid_lines())
    data = market_dir({"de_5core.txt": body, "fr_5core.txt": body, "jp_5core.txt": body})
    assert list(load_market_dir(data, ["jp", "de"])) == ["jp", "de"]
    with pytest.raises(DataError, match=r"no market 'xx'; available markets: de, fr, jp"):
        load_market_dir(data, ["de", "xx"])


def test_byte_order_mark_and_crlf_are_tolerated(market_dir):
    body = "\ufeff" + text(HEADER, valid_lines()).replace("\n", "\r\n")
    assert len(load_market_dir(market_dir({"de_5core.txt": body}))["de"].frame) == len(valid_lines())
