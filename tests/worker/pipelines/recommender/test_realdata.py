"""The loaders on the real Online Retail sample ($DLSITE_REALDATA_DIR/online_retail: 1-20 December 2010)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from worker.pipelines.recommender import data

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not os.environ.get("DLSITE_REALDATA_DIR"), reason="DLSITE_REALDATA_DIR is not set"),
]


@pytest.fixture
def retail_folder() -> Path:
    folder = Path(os.environ["DLSITE_REALDATA_DIR"]) / "online_retail"
    if not (folder / "Online Retail.csv").is_file():
        pytest.skip(f"{folder}/Online Retail.csv does not exist")
    return folder


def test_the_books_cleaning_of_the_real_sample(retail_folder):
    # Counted independently with the csv module: 39,528 rows, 680 of invoices starting with C.
    stats = data.inspect_online_retail(retail_folder)

    assert stats == {
        "rows_read": 39_528,
        "returns_dropped": 680,
        "unknown_customer_rows": 13_729,
        "rows": 38_848,
        "users": 860,
        "items": 2771,
        "baskets": 1594,
        "first": "2010-12-01 08:26:00",
        "last": "2010-12-20 16:11:00",
        "rows_at_first": 7,  # the seven lines of invoice 536365, the book's df.head()
        "users_with_two_or_more": 834,
    }
    frame = data.load_interactions(retail_folder, "online_retail").frame
    assert frame.iloc[0][["user", "item", "basket"]].tolist() == ["17850", "85123A", "536365"]
    assert frame.timestamp.iloc[0] == pd.Timestamp("2010-12-01 08:26")


def test_the_sample_falls_back_from_the_books_dates_to_a_ratio_split(retail_folder):
    interactions = data.load_interactions(retail_folder, "online_retail")

    mode, reason = data.resolve_split(
        interactions, "auto", train_end=date(2011, 10, 9), validation_end=date(2011, 11, 9)
    )
    split = data.split_interactions(
        interactions,
        mode,
        train_end=date(2011, 10, 9),
        validation_end=date(2011, 11, 9),
        validation_days=30,
        validation_fraction=0.2,
    )
    summary = data.summarise_split(split, data.encode(split))

    assert mode == "ratio" and reason.startswith("auto: the data (2010-12-01..2010-12-20) does not cover")
    assert (summary["train_rows"], summary["validation_rows"]) == (31_077, 7771)
    assert (summary["evaluated_users"], summary["evaluated_items"], summary["validation_groups"]) == (101, 1949, 323)
    with pytest.raises(ValueError, match="split=dates: the train set is empty"):
        data.split_interactions(
            interactions,
            "dates",
            train_end=date(2010, 10, 9),
            validation_end=date(2010, 11, 9),
            validation_days=30,
            validation_fraction=0.2,
        )
