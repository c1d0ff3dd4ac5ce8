"""Tiny datasets of the recommender tests, written in each real format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
# Two days of a shop: a return (C...), an unknown customer, one invoice per row group, dd/mm dates.
RETAIL_ROWS = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,01/12/2010 08:26,2.55,17850,United Kingdom",
    "536365,71053,WHITE METAL LANTERN,6,01/12/2010 08:26,3.39,17850,United Kingdom",
    "536366,22633,HAND WARMER UNION JACK,6,01/12/2010 08:28,1.85,17850,United Kingdom",
    "C536379,D,Discount,-1,01/12/2010 09:41,27.5,14527,United Kingdom",
    "536367,85123A,WHITE HANGING HEART T-LIGHT HOLDER,3,01/12/2010 08:34,2.55,13047,United Kingdom",
    "536368,71053,WHITE METAL LANTERN,2,01/12/2010 08:35,3.39,,United Kingdom",
    "536369,22633,HAND WARMER UNION JACK,1,02/12/2010 10:00,1.85,13047,United Kingdom",
    "536369,85123A,WHITE HANGING HEART T-LIGHT HOLDER,1,02/12/2010 10:00,2.55,13047,United Kingdom",
    "536370,71053,WHITE METAL LANTERN,1,02/12/2010 11:00,3.39,,France",
]


@pytest.fixture
def retail_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "retail"
    folder.mkdir()
    (folder / "Online Retail.csv").write_bytes((RETAIL_HEADER + "\n".join(RETAIL_ROWS) + "\n").encode("latin-1"))
    return folder


@pytest.fixture
def movielens_latest(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n2,31,4.0,1260759100\n"
        "2,10,5.0,1260759300\n"
    )
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n31,Dangerous Minds,Drama\n1029,Dumbo,Animation\n10,"GoldenEye",Action\n'
    )
    return folder


@pytest.fixture
def movielens_100k(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t1\t881250950\n")
    (folder / "u.item").write_bytes(
        "242|Kolya (1996)|24-Jan-1997||\n302|L.A. Confidential (1997)|01-Jan-1997||\n".encode("latin-1")
    )
    return folder


def clustered_interactions(users: int = 24, items: int = 30, per_user: int = 14, seed: int = 0) -> list[tuple]:
    """(user, item, timestamp) rows where each user mostly picks from one of three item clusters."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        cluster = user % 3
        for step in range(per_user):
            item = (
                cluster * (items // 3) + int(rng.integers(0, items // 3))
                if rng.random() < 0.85
                else int(rng.integers(0, items))
            )
            rows.append((f"u{user}", f"i{item}", 1_600_000_000 + user * 1000 + step * 10))
    return rows


@pytest.fixture(scope="session")
def interactions_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("interactions")
    lines = ["user,item,timestamp,title"] + [
        f"{user},{item},{stamp},Title of {item}" for user, item, stamp in clustered_interactions()
    ]
    (folder / "interactions.csv").write_text("\n".join(lines) + "\n")
    return folder
