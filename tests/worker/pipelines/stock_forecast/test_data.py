"""stock_forecast data: the book's cosine, windowing, the CSV loaders, built-in datasets, the split
and the naive baseline (no TensorFlow)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest

from tests.worker.pipelines.stock_forecast.conftest import csv_folder
from worker.pipelines.base import get_pipeline
from worker.pipelines.stock_forecast import data
from worker.pipelines.stock_forecast.pipeline import naive_errors, split_windows

# The book's `print(fetch_cosine_values(10, frequency=0.1))`, as printed.
BOOK_COSINE_10 = [1.00327973, 0.82315051, 0.21471184, -0.37471266, -0.7719616, -0.93322063, -0.84762375,
                  -0.23029438, 0.35332577, 0.74700479]  # fmt: skip


# The cosine --------------------------------------------------------------------------------------


def test_cosine_matches_the_books_printout():
    np.testing.assert_allclose(data.fetch_cosine_values(10, frequency=0.1), BOOK_COSINE_10, atol=5e-9)


def test_cosine_is_bit_exact_with_the_books_code():
    state = np.random.get_state()
    try:
        # The book's function, verbatim: it reseeds the global generator.
        np.random.seed(101)
        x = np.arange(0.0, 520, 1.0)
        book = np.cos(2 * np.pi * 0.01 * x) + np.random.uniform(low=-0.1, high=0.1, size=520)
    finally:
        np.random.set_state(state)

    values = data.fetch_cosine_values(520)

    assert np.array_equal(values, book)
    assert (values[0], values[1], values[519]) == (1.0032797255404893, 1.0121602458018994, 0.327579083828394)


def test_the_builtin_cosine_file_holds_the_exact_values(tmp_path):
    folder, digest = data.build_cosine(tmp_path, points=520, frequency=0.01, noise=0.1, seed=101)

    series = data.read_series(folder)

    assert folder.name == "cosine-v1-seed101-f0.01-n0.1-520"
    assert digest == "ef429c0241bc127354df84f721395d0624b8c00c25b351fc43af7609ec692821"
    assert np.array_equal(series.values, data.fetch_cosine_values(520))
    assert series.dates is None and series.value_column == "value"
    assert data.build_cosine(tmp_path, points=520, frequency=0.01, noise=0.1, seed=101) == (folder, digest)


def test_the_builtin_msft_is_bokehs_2000_2013_series(tmp_path):
    folder, digest = data.build_msft(tmp_path)

    series = data.read_series(folder)

    assert digest == "4d338fe0d0abd2c59db46c096ca49c03e50e691c660cf2f630cd20961395a417"
    assert len(series.values) == 3270
    assert (series.dates[0], series.dates[-1]) == ("2000-03-01", "2013-03-01")
    assert (series.values[0], series.values[-1]) == (30.225709797294, 24.684342419163)
    assert series.value_column == "Adj. Close"


# Windowing ---------------------------------------------------------------------------------------


def test_format_dataset_windows_with_stride_one():
    features, labels = data.format_dataset(np.arange(20.0), 5)

    assert features.shape == (15, 5) and labels.shape == (15,)
    assert features[0].tolist() == [0, 1, 2, 3, 4] and labels[0] == 5
    assert features[-1].tolist() == [14, 15, 16, 17, 18] and labels[-1] == 19


def test_the_books_cosine_split_is_500_windows():
    features, labels = data.format_dataset(data.fetch_cosine_values(520), 20)

    assert features.shape == (500, 20)
    assert np.array_equal(features[250:, -1], data.fetch_cosine_values(520)[269:519])


def test_format_dataset_needs_more_values_than_the_window():
    with pytest.raises(ValueError, match="window: the series has 5 values, it needs more than the window of 5"):
        data.format_dataset(np.arange(5.0), 5)


# The WIKI loader ---------------------------------------------------------------------------------


def test_wiki_csv_is_read_oldest_first_from_adj_close(wiki_tiny):
    series = data.read_series(wiki_tiny)

    assert series.dates == ["2016-12-30", "2017-01-03", "2017-01-04", "2017-01-05", "2017-01-06", "2017-01-09", "2017-01-10"]
    assert series.values.tolist() == [59.0, 59.75, 59.5, 60.0, 61.0, 60.25, 60.5]
    assert (series.source, series.value_column) == ("WIKI-MSFT.csv", "Adj. Close")


def test_wiki_csv_date_range_and_windows_are_exact(wiki_tiny):
    series = data.read_series(wiki_tiny, start=datetime.date(2017, 1, 1), end=datetime.date(2017, 1, 9))
    features, labels = data.format_dataset(series.values, 3)

    assert series.dates == ["2017-01-03", "2017-01-04", "2017-01-05", "2017-01-06", "2017-01-09"]
    assert features.tolist() == [[59.75, 59.5, 60.0], [59.5, 60.0, 61.0]]
    assert labels.tolist() == [61.0, 60.25]


def test_a_chosen_value_column(wiki_tiny):
    series = data.read_series(wiki_tiny, value_column="Close")

    assert series.values[:2].tolist() == [62.14, 62.58]


def test_any_dated_csv_with_a_lowercase_date_column(tmp_path):
    folder = csv_folder(tmp_path, "date,price\n2020-01-03,3\n2020-01-01T00:00:00,1\n2020-01-02,2\n")

    series = data.read_series(folder)

    assert series.dates == ["2020-01-01", "2020-01-02", "2020-01-03"]
    assert series.values.tolist() == [1.0, 2.0, 3.0]
    assert series.value_column == "price"


def test_an_undated_series_keeps_file_order(tmp_path):
    folder = csv_folder(tmp_path, "value\n3\n1\n2\n")

    series = data.read_series(folder)

    assert series.values.tolist() == [3.0, 1.0, 2.0] and series.dates is None


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("Date,Close,Open\n2020-01-01,1,2\n", {}, "prices.csv: choose the value column (param value_column) among Close, Open"),
        ("Date,Close\n2020-01-01,1\n", {"value_column": "Adj. Close"}, "prices.csv: no value column 'Adj. Close'; the columns are Date, Close"),
        ("Date,Close\n2020-01-01,1\n", {"date_column": "Day"}, "prices.csv: no date column 'Day'; the columns are Date, Close"),
        ("Date,Close\n2020-01-01,1\n2020-01-02,n/a\n", {}, "prices.csv: line 3: Close is 'n/a', not a number"),
        ("Date,Close\n2020-01-01,1\n2020-01-01,2\n", {}, "prices.csv: the date 2020-01-01 appears twice in column 'Date'"),
        ("Date,Close\n01/02/2020,1\n", {}, "prices.csv: line 2: Date is '01/02/2020', not an ISO date (YYYY-MM-DD)"),
        ("Date,Close\n2020-01-01,1,7\n", {}, "prices.csv: line 2 has 3 fields, the header has 2"),
        ("value\n1\n2\n", {"start": datetime.date(2020, 1, 1)}, "prices.csv: start and end need a date column, and this CSV has none"),
        ("Date,Close\n2020-01-01,1\n", {"start": datetime.date(2021, 1, 1)}, "prices.csv: no rows between 2021-01-01 and the end"),
        ("", {}, "prices.csv: empty, expected a header line"),
    ],
)
def test_bad_csvs_are_rejected_naming_file_and_line(tmp_path, content, kwargs, message):
    folder = csv_folder(tmp_path, content)

    with pytest.raises(ValueError) as error:
        data.read_series(folder, **kwargs)

    assert str(error.value) == message


def test_the_folder_must_hold_exactly_one_csv(tmp_path):
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._prices.csv").write_text("junk")
    with pytest.raises(ValueError, match="no .csv file found"):
        data.find_csv(tmp_path)
    (tmp_path / "a.csv").write_text("value\n1\n")
    (tmp_path / "b.csv").write_text("value\n1\n")
    with pytest.raises(ValueError, match=r"more than one .csv file \(a.csv, b.csv\)"):
        data.find_csv(tmp_path)


def test_inspect_reports_columns_span_and_order(wiki_tiny):
    stats = data.inspect_price_csv(wiki_tiny)

    assert stats["rows"] == 7
    assert stats["value_column"] == "Adj. Close"
    assert (stats["first_date"], stats["last_date"], stats["order"]) == ("2016-12-30", "2017-01-10", "newest first")
    assert "Date" not in stats["numeric_columns"] and len(stats["numeric_columns"]) == 12


def test_inspect_rejects_a_csv_without_numbers(tmp_path):
    with pytest.raises(ValueError, match="prices.csv: no column holds only numbers"):
        data.inspect_price_csv(csv_folder(tmp_path, "Date,Name\n2020-01-01,a\n"))


# Split and baseline ------------------------------------------------------------------------------


def test_naive_baseline_matches_a_hand_computation():
    features = np.array([[1.0, 2.0], [2.0, 4.0], [4.0, 3.0]])
    labels = np.array([4.0, 3.0, 5.0])

    errors = naive_errors(features, labels)

    # today = [2, 4, 3]; errors [2, -1, 2]
    assert errors["naive_mse"] == pytest.approx(9 / 3)
    assert errors["naive_mae"] == pytest.approx(5 / 3)
    # The book's broadcast: every (label i, today j) pair, 9 differences.
    assert errors["naive_mse_book_formula"] == pytest.approx(21 / 9)
    assert errors["naive_mae_book_formula"] == pytest.approx(11 / 9)


def test_the_books_cosine_baseline_and_its_broadcast_figure():
    features, labels = data.format_dataset(data.fetch_cosine_values(520), 20)

    errors = naive_errors(features[250:], labels[250:])

    # The book printed 0.964302 / 0.793475 for its "benchmark": the broadcast.
    assert round(errors["naive_mse_book_formula"], 6) == 0.964302
    assert round(errors["naive_mae_book_formula"], 6) == 0.793475
    assert round(errors["naive_mse"], 6) == 0.009484
    assert round(errors["naive_mae"], 6) == 0.078943


@pytest.mark.parametrize(
    ("overrides", "windows", "expected"),
    [
        ({}, 500, (range(0, 250), range(250, 250), range(250, 500))),
        ({"test_size": 10}, 500, (range(0, 250), range(250, 250), range(250, 260))),
        ({"validation_split": 0.1}, 500, (range(0, 225), range(225, 250), range(250, 500))),
    ],
)
def test_split_is_by_window_index(overrides, windows, expected):
    params = get_pipeline("stock_forecast").resolve_params({"preset": "cosine", **overrides})

    split = split_windows(windows, params)

    assert (split.fit, split.validation, split.test) == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train_size": 500}, "train_size: the series gives 500 windows of 20 values; train_size 500 leaves none for testing"),
        ({"test_size": 251}, "test_size: only 250 windows follow the 250 training ones, test_size asks for 251"),
    ],
)
def test_split_rejects_sizes_the_series_cannot_give(overrides, message):
    params = get_pipeline("stock_forecast").resolve_params({"preset": "cosine", **overrides})

    with pytest.raises(ValueError) as error:
        split_windows(500, params)

    assert str(error.value) == message


def test_a_msft_2015_2016_span_gives_the_books_split(tmp_path: Path):
    # 504 trading days -> 484 windows: 252 train (the book's train_size), 232 test (252 - 20).
    params = get_pipeline("stock_forecast").resolve_params({})

    split = split_windows(504 - 20, params)

    assert (len(split.fit), len(split.test)) == (252, 232)
