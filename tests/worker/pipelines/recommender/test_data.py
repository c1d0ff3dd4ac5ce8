"""Recommender data: the three upload formats, the built-in MovieLens, time splits, encoders, windows."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from worker.pipelines.recommender import data
from worker.pipelines.recommender.training import last_tokens, popularity_counts, training_windows

BOOK_DATES = {"train_end": date(2011, 10, 9), "validation_end": date(2011, 11, 9)}


def split(interactions, mode, **overrides):
    options = {**BOOK_DATES, "validation_days": 1, "validation_fraction": 0.5, **overrides}
    return data.split_interactions(interactions, mode, **options)


# Online Retail -----------------------------------------------------------------------------------


def test_online_retail_csv_is_cleaned_as_in_the_book(retail_folder):
    interactions = data.load_interactions(retail_folder, "online_retail")
    frame = interactions.frame

    assert interactions.stats == {"rows_read": 9, "returns_dropped": 1, "unknown_customer_rows": 2}
    assert len(frame) == 8
    assert list(frame.columns) == ["user", "item", "basket", "timestamp", "weight"]
    assert frame.basket.tolist() == ["536365", "536365", "536366", "536367", "536368", "536369", "536369", "536370"]
    assert frame.item.tolist()[:3] == ["85123A", "71053", "22633"]  # the file's order inside an invoice
    assert frame.user.tolist()[:4] == ["17850", "17850", "17850", "13047"]
    assert frame.user.isna().tolist() == [False] * 4 + [True, False, False, True]  # unknown customers kept
    assert frame.timestamp[0] == pd.Timestamp("2010-12-01 08:26")
    assert frame.timestamp.iloc[-1] == pd.Timestamp("2010-12-02 11:00")  # dd/mm/yyyy, not mm/dd
    assert interactions.titles["85123A"] == "WHITE HANGING HEART T-LIGHT HOLDER"


def test_online_retail_statistics_for_the_upload_check(retail_folder):
    stats = data.inspect_online_retail(retail_folder)

    assert stats == {
        "rows_read": 9,
        "returns_dropped": 1,
        "unknown_customer_rows": 2,
        "rows": 8,
        "users": 2,
        "items": 3,
        "baskets": 6,
        "first": "2010-12-01 08:26:00",
        "last": "2010-12-02 11:00:00",
        "rows_at_first": 2,
        "users_with_two_or_more": 2,
    }


def test_online_retail_errors_name_the_file_and_the_problem(retail_folder):
    path = retail_folder / "Online Retail.csv"
    path.write_text("InvoiceNo,StockCode\n1,2\n")
    with pytest.raises(ValueError, match=r"Online Retail.csv: missing column\(s\) description, quantity"):
        data.load_interactions(retail_folder, "online_retail")

    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n1,2,x,1,yesterday,1,,UK\n"
    )
    with pytest.raises(ValueError, match="Online Retail.csv: InvoiceDate 'yesterday' is not a date"):
        data.load_interactions(retail_folder, "online_retail")

    (retail_folder / "second.csv").write_text("a\n")
    with pytest.raises(ValueError, match="more than one data file"):
        data.load_interactions(retail_folder, "online_retail")


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no an Online Retail .xlsx or .csv found"):
        data.load_interactions(tmp_path, "online_retail")
    with pytest.raises(ValueError, match=r"no ratings.csv \(ml-latest-small\) or u.data \(ml-100k\) found"):
        data.load_interactions(tmp_path, "movielens")


def test_online_retail_xlsx_reads_like_the_csv(retail_folder, tmp_path):
    pytest.importorskip("openpyxl")
    frame = pd.read_csv(retail_folder / "Online Retail.csv", dtype=str)
    frame["InvoiceDate"] = pd.to_datetime(frame.InvoiceDate, format="%d/%m/%Y %H:%M")
    frame["CustomerID"] = pd.to_numeric(frame.CustomerID)  # the sheet stores ids as numbers: 17850.0
    folder = tmp_path / "xlsx"
    folder.mkdir()
    frame.to_excel(folder / "Online Retail.xlsx", index=False)

    from_xlsx = data.load_interactions(folder, "online_retail").frame
    from_csv = data.load_interactions(retail_folder, "online_retail").frame

    pd.testing.assert_frame_equal(from_xlsx, from_csv, check_dtype=False)


# MovieLens and generic interactions ----------------------------------------------------------------


def test_movielens_latest_small_with_titles(movielens_latest):
    interactions = data.load_interactions(movielens_latest, "movielens")

    assert interactions.frame[["user", "item"]].values.tolist() == [
        ["2", "31"],
        ["1", "31"],
        ["1", "1029"],
        ["2", "10"],
    ]
    assert interactions.frame.basket.tolist() == ["2", "1", "1", "2"]  # a user's ratings are evaluated together
    assert interactions.titles == {"31": "Dangerous Minds", "1029": "Dumbo", "10": "GoldenEye"}
    assert interactions.stats == {"rows_read": 4, "below_min_rating": 0}


def test_movielens_ratings_thresholded(movielens_latest):
    interactions = data.load_interactions(movielens_latest, "movielens", min_rating=3.0)

    assert interactions.frame.item.tolist() == ["31", "1029", "10"]
    assert interactions.stats["below_min_rating"] == 1


def test_movielens_100k_u_data(movielens_100k):
    interactions = data.load_interactions(movielens_100k, "movielens")

    assert interactions.frame[["user", "item"]].values.tolist() == [["196", "242"], ["196", "302"], ["186", "302"]]
    assert interactions.titles == {"242": "Kolya (1996)", "302": "L.A. Confidential (1997)"}


def test_generic_interactions_csv(tmp_path):
    (tmp_path / "events.csv").write_text(
        "user,item,timestamp,weight,transaction\na,x,2020-01-02T10:00:00,2,t1\n,y,2020-01-01T09:00:00,1,t0\n"
    )
    frame = data.load_interactions(tmp_path, "interactions").frame

    assert frame.item.tolist() == ["y", "x"]
    assert pd.isna(frame.user[0]) and frame.user[1] == "a"  # an empty user is an unknown customer
    assert frame.basket.tolist() == ["t0", "t1"]
    assert frame.weight.tolist() == [1.0, 2.0]


def test_generic_interactions_errors(tmp_path):
    (tmp_path / "events.csv").write_text("user,item\na,x\n")
    with pytest.raises(ValueError, match=r"events.csv: missing column\(s\) timestamp"):
        data.load_interactions(tmp_path, "interactions")
    (tmp_path / "events.csv").write_text("user,item,timestamp\na,x,soon\n")
    with pytest.raises(ValueError, match="events.csv: timestamp 'soon' is neither unix seconds nor an ISO date"):
        data.load_interactions(tmp_path, "interactions")


def test_the_builtin_movielens_is_written_once_in_the_real_format(tmp_path):
    folder, digest = data.build_movielens_small(tmp_path)

    assert folder.name == "movielens_small-v1"
    assert sorted(path.name for path in folder.iterdir()) == ["dataset.json", "movies.csv", "ratings.csv"]
    assert data.build_movielens_small(tmp_path) == (folder, digest)
    stats = data.inspect_movielens(folder)
    assert (stats["rows"], stats["users"], stats["items"]) == (100_004, 671, 9066)
    assert data.load_interactions(folder, "movielens").titles["1"] == "Toy Story"


# Splits ----------------------------------------------------------------------------------------------


def test_dates_split_follows_the_book_boundaries(retail_folder):
    interactions = data.load_interactions(retail_folder, "online_retail")

    parts = split(interactions, "dates", train_end=date(2010, 12, 2), validation_end=date(2010, 12, 3))

    assert (len(parts.train), len(parts.validation), len(parts.test)) == (5, 3, 0)
    assert parts.validation.basket.tolist() == ["536369", "536369", "536370"]


def test_auto_split_per_kind(retail_folder, movielens_latest, interactions_folder):
    retail = data.load_interactions(retail_folder, "online_retail")
    mode, reason = data.resolve_split(retail, "auto", **BOOK_DATES)
    assert mode == "ratio"  # the data ends before the book's 2011 dates
    assert reason == "auto: the data (2010-12-01..2010-12-02) does not cover the dates 2011-10-09..2011-11-09"
    assert (
        data.resolve_split(retail, "auto", train_end=date(2010, 12, 2), validation_end=date(2010, 12, 3))[0] == "dates"
    )
    assert (
        data.resolve_split(data.load_interactions(movielens_latest, "movielens"), "auto", **BOOK_DATES)[0] == "per_user"
    )
    assert data.resolve_split(retail, "last_days", **BOOK_DATES) == ("last_days", "requested")


def test_per_user_split_holds_out_each_users_latest(movielens_latest):
    parts = split(data.load_interactions(movielens_latest, "movielens"), "per_user")

    assert parts.train[["user", "item"]].values.tolist() == [["2", "31"], ["1", "31"]]
    assert parts.validation[["user", "item"]].values.tolist() == [["1", "1029"], ["2", "10"]]


def test_ratio_and_last_days_split_by_time(retail_folder):
    retail = data.load_interactions(retail_folder, "online_retail")

    by_ratio = split(retail, "ratio", validation_fraction=0.25)
    last_day = split(retail, "last_days", validation_days=1)

    assert by_ratio.validation.basket.tolist() == ["536369", "536369", "536370"]  # whole invoices
    assert last_day.validation.basket.tolist() == ["536369", "536369", "536370"]


def test_a_split_that_leaves_a_side_empty_names_the_split(retail_folder):
    retail = data.load_interactions(retail_folder, "online_retail")

    with pytest.raises(ValueError, match="split=dates: the validation set is empty"):
        split(retail, "dates")
    with pytest.raises(ValueError, match="split=last_days: the train set is empty"):
        split(retail, "last_days", validation_days=10)


# Encoding, windows -------------------------------------------------------------------------------------


def test_encoding_indexes_training_items_and_known_users(retail_folder):
    retail = data.load_interactions(retail_folder, "online_retail")
    parts = split(retail, "dates", train_end=date(2010, 12, 2), validation_end=date(2010, 12, 3))

    encoded = data.encode(parts)

    assert encoded.items == ["22633", "71053", "85123A"]
    assert encoded.users == ["13047", "17850"]
    assert encoded.train_users.tolist() == [1, 1, 1, 0, -1]
    assert encoded.group_indptr.tolist() == [0, 2, 3]
    assert encoded.group_users.tolist() == [0, -1]  # the unknown customer's invoice
    assert encoded.validation_items.tolist() == [0, 2, 1]
    assert popularity_counts(encoded).tolist() == [1.0, 2.0, 2.0]  # book: value_counts, unknown users included
    summary = data.summarise_split(parts, encoded)
    assert (summary["evaluated_users"], summary["evaluated_items"], summary["groups_with_unknown_user"]) == (1, 3, 1)
    assert [history.tolist() for history in data.user_histories(encoded)] == [[2], [2, 1, 0]]


def test_items_first_seen_in_validation_get_their_own_negative_index(movielens_latest):
    encoded = data.encode(split(data.load_interactions(movielens_latest, "movielens"), "per_user"))

    assert encoded.items == ["31"]
    assert encoded.validation_items.tolist() == [-2, -1]  # 1029 and 10: never recommended, always a miss


def _windows_of(*baskets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.array(baskets)
    encoded = data.Encoded(
        items=[],
        users=[],
        train_users=np.repeat(np.arange(len(baskets)), lengths),
        train_items=np.concatenate([np.arange(length) for length in baskets]),
        train_baskets=np.repeat(np.arange(len(baskets)), lengths),
        train_weights=np.ones(lengths.sum(), np.float32),
        group_indptr=np.zeros(1, np.int64),
        group_users=np.zeros(0, np.int64),
        validation_items=np.zeros(0, np.int64),
    )
    return training_windows(encoded, 5)


def test_training_windows_are_the_books_examples():
    inputs, targets, users = _windows_of(5)  # S = [e1..e5] (tokens 1..5)
    assert inputs.tolist() == [[0, 1, 2, 3, 4]] and targets.tolist() == [[1, 2, 3, 4, 5]]

    inputs, targets, _ = _windows_of(2)  # S = [e1, e2]
    assert inputs.tolist() == [[0, 1, 2, 0, 0]] and targets.tolist() == [[1, 2, 0, 0, 0]]

    inputs, targets, _ = _windows_of(7)  # S = [e1..e7]: three windows
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [2, 3, 4, 5, 6]]
    assert targets.tolist() == [[1, 2, 3, 4, 5], [2, 3, 4, 5, 6], [3, 4, 5, 6, 7]]

    _, _, users = _windows_of(2, 7)
    assert users.tolist() == [1, 2, 2, 2]  # user index + 1; 0 is the unknown user


def test_last_tokens_left_pad_with_the_no_item_token():
    assert last_tokens([np.array([4, 5, 6]), np.array([], np.int64)], 2).tolist() == [[6, 7], [0, 0]]
    assert last_tokens([np.array([4])], 3).tolist() == [[0, 0, 5]]
