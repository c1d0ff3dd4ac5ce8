"""The loader on the real Quandl WIKI MSFT download ($DLSITE_REALDATA_DIR/stock_msft: 1986-2018, newest first)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np
import pytest

from worker.pipelines.stock_forecast import data
from worker.pipelines.stock_forecast.pipeline import naive_errors

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not os.environ.get("DLSITE_REALDATA_DIR"), reason="DLSITE_REALDATA_DIR is not set"),
]

BOOK_SPAN = {"start": datetime.date(2015, 1, 1), "end": datetime.date(2016, 12, 31)}


@pytest.fixture
def wiki_msft() -> Path:
    folder = Path(os.environ["DLSITE_REALDATA_DIR"]) / "stock_msft"
    if not (folder / "WIKI-MSFT.csv").is_file():
        pytest.skip(f"{folder}/WIKI-MSFT.csv does not exist")
    return folder


def test_inspects_the_real_download(wiki_msft):
    stats = data.inspect_price_csv(wiki_msft)

    assert stats["columns"] == list(data.WIKI_COLUMNS)
    assert stats["value_column"] == "Adj. Close"
    assert stats["order"] == "newest first"
    assert stats["first_date"] <= "2015-01-02" and stats["last_date"] >= "2016-12-30"


def test_the_books_span_is_two_years_of_trading_days_oldest_first(wiki_msft):
    series = data.read_series(wiki_msft, **BOOK_SPAN)

    assert len(series.values) == 504
    assert (series.dates[0], series.dates[-1]) == ("2015-01-02", "2016-12-30")
    assert series.dates == sorted(series.dates)
    # The file's last 2015-01-02 row and first 2016-12-30 row, Adj. Close.
    assert (series.values[0], series.values[-1]) == (43.344312280166, 60.78871003371)


def test_the_books_windows_and_the_correct_naive_baseline(wiki_msft):
    series = data.read_series(wiki_msft, **BOOK_SPAN)
    features, labels = data.format_dataset(series.values, 20)

    assert features.shape == (484, 20)
    assert np.array_equal(features[0], series.values[:20]) and labels[0] == series.values[20]
    errors = naive_errors(features[252:], labels[252:])
    # Tomorrow = today is off by about half a dollar a day in 2016; the book's broadcast said 4.7.
    assert round(errors["naive_mae"], 4) == 0.4889
    assert round(errors["naive_mse"], 4) == 0.4875
    assert round(errors["naive_mse_book_formula"], 2) == 33.08
