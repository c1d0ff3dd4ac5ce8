"""Time series for chapter 5: the book's noisy cosine, price CSVs, windowing and the built-in data.

A dataset is a folder holding one CSV (an upload is a zip of it):
- dated: a date column (`Date` by default, any ISO date) and a value column (`Adj. Close` by
  default, the book's). Rows are sorted by date, oldest first, whatever order the file has: a
  Quandl WIKI CSV is newest first. Optional `start` / `end` dates keep a range, both inclusive.
- undated: no date column; rows are taken in file order (the built-in cosine is one).

The book's windowing (`format_dataset`): window i is `values[i:i + W]` and its label is
`values[i + W]`, stride 1, so N values give N - W windows; the first windows train, the rest test.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "PriceSeries", "fetch_cosine_values", "format_dataset", "find_csv", "read_series", "inspect_price_csv",
    "build_cosine", "build_msft",
]  # fmt: skip

DEFAULT_DATE_COLUMN = "Date"
DEFAULT_VALUE_COLUMN = "Adj. Close"  # book: historic["Adj. Close"]
# The Quandl WIKI CSV header (the book's `curl .../WIKI/FB/data.csv`).
WIKI_COLUMNS = (
    "Date", "Open", "High", "Low", "Close", "Volume", "Ex-Dividend", "Split Ratio",
    "Adj. Open", "Adj. High", "Adj. Low", "Adj. Close", "Adj. Volume",
)  # fmt: skip
COSINE_FILE = "cosine.csv"
COSINE_COLUMN = "value"
MSFT_FILE = "MSFT.csv"
# Bumped whenever a built-in file's content changes, so cached copies are rebuilt.
BUILTIN_VERSION = 1


@dataclass(frozen=True)
class PriceSeries:
    """A series in time order: float64 values and, when dated, their ISO dates."""

    values: np.ndarray
    dates: list[str] | None
    source: str  # the CSV's name, for messages and reports
    value_column: str


# The book's data ---------------------------------------------------------------------------------


def fetch_cosine_values(seq_len: int, *, frequency: float = 0.01, noise: float = 0.1, seed: int = 101) -> np.ndarray:
    """The book's `fetch_cosine_values`: cos(2*pi*frequency*t) plus uniform noise in [-noise, noise].

    The book seeds numpy's global generator with 101 inside the function; a RandomState with the same
    seed draws the same numbers without touching global state.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len: expected at least 1, got {seq_len}")
    x = np.arange(0.0, seq_len, 1.0)
    noise_values = np.random.RandomState(seed).uniform(low=-noise, high=noise, size=seq_len)
    return np.cos(2 * np.pi * frequency * x) + noise_values


def format_dataset(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The book's `format_dataset`: (N - W, W) windows of the past and the (N - W,) next values."""
    values = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise ValueError(f"window: expected at least 1, got {window}")
    if len(values) <= window:
        raise ValueError(f"window: the series has {len(values)} values, it needs more than the window of {window}")
    features = np.lib.stride_tricks.sliding_window_view(values[:-1], window).copy()
    return features, values[window:].copy()


# Reading CSVs ------------------------------------------------------------------------------------


def find_csv(folder: Path) -> Path:
    """The one CSV file inside `folder` (at any depth); ValueError if there is none or several."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder.name}: not a folder")
    found = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() == ".csv" and _visible(path, folder)
    )
    if not found:
        raise ValueError("no .csv file found: the dataset must hold one CSV of prices")
    if len(found) > 1:
        names = ", ".join(_name(path, folder) for path in found[:3])
        raise ValueError(f"more than one .csv file ({names}): the dataset must hold exactly one")
    return found[0]


def read_series(
    folder: Path,
    *,
    date_column: str | None = None,
    value_column: str | None = None,
    start: datetime.date | None = None,
    end: datetime.date | None = None,
) -> PriceSeries:
    """The dataset's series, oldest first, within [start, end].

    `date_column` None means `Date` (any capitalisation) if the CSV has one, else an undated series
    in file order; `value_column` None means `Adj. Close` if present, else the one other column.
    """
    path = find_csv(folder)
    name = _name(path, Path(folder))
    header, rows = _read_rows(path, name)
    date_name = _date_column(header, date_column, name)
    value_name = _value_column(header, value_column, date_name, name)
    if date_name is None and (start is not None or end is not None):
        raise ValueError(f"{name}: start and end need a date column, and this CSV has none")
    value_index = header.index(value_name)
    date_index = header.index(date_name) if date_name is not None else None

    records: list[tuple[datetime.date | None, float]] = []
    for line, row in rows:
        value = _parse_float(row[value_index], name, line, value_name)
        day = _parse_date(row[date_index], name, line, date_name) if date_index is not None else None
        records.append((day, value))
    dates = None
    if date_index is not None:
        records.sort(key=lambda record: record[0])
        for (previous, _), (current, _) in zip(records, records[1:]):
            if previous == current:
                raise ValueError(f"{name}: the date {current.isoformat()} appears twice in column {date_name!r}")
        records = [
            record
            for record in records
            if (start is None or record[0] >= start) and (end is None or record[0] <= end)
        ]
        dates = [day.isoformat() for day, _ in records]
    if not records:
        span = f" between {start or 'the start'} and {end or 'the end'}" if date_index is not None else ""
        raise ValueError(f"{name}: no rows{span}")
    values = np.array([value for _, value in records], dtype=np.float64)
    return PriceSeries(values=values, dates=dates, source=name, value_column=value_name)


def inspect_price_csv(folder: Path) -> dict:
    """Statistics of an upload (rows, columns, date span, order); ValueError if it cannot be read."""
    path = find_csv(folder)
    name = _name(path, Path(folder))
    header, rows = _read_rows(path, name)
    date_name = _date_column(header, None, name)
    numeric = []
    for index, column in enumerate(header):
        if column == date_name:
            continue
        if all(_is_float(row[index]) for _, row in rows):
            numeric.append(column)
    if not numeric:
        raise ValueError(f"{name}: no column holds only numbers, so there is no series to forecast")
    stats: dict = {"file": name, "rows": len(rows), "columns": header, "numeric_columns": numeric}
    if DEFAULT_VALUE_COLUMN in numeric:
        stats["value_column"] = DEFAULT_VALUE_COLUMN
    elif len(numeric) == 1:
        stats["value_column"] = numeric[0]
    if date_name is not None:
        days = [_parse_date(row[header.index(date_name)], name, line, date_name) for line, row in rows]
        stats.update(
            date_column=date_name,
            first_date=min(days).isoformat(),
            last_date=max(days).isoformat(),
            order="newest first" if days[0] > days[-1] else "oldest first",
        )
    return stats


def _read_rows(path: Path, name: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [column.strip() for column in next(reader, [])]
            rows = [(line, row) for line, row in enumerate(reader, start=2) if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise ValueError(f"{name}: not a UTF-8 text file") from None
    except csv.Error as error:
        raise ValueError(f"{name}: not a readable CSV ({error})") from None
    if not header or not any(header):
        raise ValueError(f"{name}: empty, expected a header line")
    if len(set(header)) != len(header):
        raise ValueError(f"{name}: the header names a column twice")
    for line, row in rows:
        if len(row) != len(header):
            raise ValueError(f"{name}: line {line} has {len(row)} fields, the header has {len(header)}")
    return header, rows


def _date_column(header: list[str], requested: str | None, name: str) -> str | None:
    if requested:
        if requested not in header:
            raise ValueError(f"{name}: no date column {requested!r}; the columns are {', '.join(header)}")
        return requested
    return next((column for column in header if column.lower() == DEFAULT_DATE_COLUMN.lower()), None)


def _value_column(header: list[str], requested: str | None, date_name: str | None, name: str) -> str:
    if requested:
        if requested not in header:
            raise ValueError(f"{name}: no value column {requested!r}; the columns are {', '.join(header)}")
        if requested == date_name:
            raise ValueError(f"{name}: the value column {requested!r} is also the date column")
        return requested
    if DEFAULT_VALUE_COLUMN in header:
        return DEFAULT_VALUE_COLUMN
    others = [column for column in header if column != date_name]
    if len(others) == 1:
        return others[0]
    raise ValueError(f"{name}: choose the value column (param value_column) among {', '.join(others)}")


def _parse_float(text: str, name: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: line {line}: {column} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: line {line}: {column} is {text!r}, not a finite number")
    return value


def _is_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _parse_date(text: str, name: str, line: int, column: str) -> datetime.date:
    try:
        return datetime.datetime.fromisoformat(text.strip()).date()
    except ValueError:
        raise ValueError(f"{name}: line {line}: {column} is {text!r}, not an ISO date (YYYY-MM-DD)") from None


def _visible(path: Path, root: Path) -> bool:
    # Zips made on macOS carry __MACOSX/ and ._* copies.
    return not any(part.startswith((".", "__MACOSX")) for part in path.relative_to(root).parts)


def _name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# Built-in datasets -------------------------------------------------------------------------------


def build_cosine(cache_root: Path, *, points: int, frequency: float, noise: float, seed: int) -> tuple[Path, str]:
    """The book's noisy cosine as an undated one-column CSV (exact: floats written round-trip)."""
    folder = Path(cache_root) / f"cosine-v{BUILTIN_VERSION}-seed{seed}-f{frequency:g}-n{noise:g}-{points}"
    values = fetch_cosine_values(points, frequency=frequency, noise=noise, seed=seed)
    lines = [COSINE_COLUMN] + [repr(float(value)) for value in values]
    return _write_once(folder, COSINE_FILE, "\n".join(lines) + "\n")


def build_msft(cache_root: Path) -> tuple[Path, str]:
    """MSFT daily prices 2000-03-01..2013-03-01 (3270 days) from the bokeh-sampledata package,
    written in the Quandl WIKI column names that the loader reads by default."""
    from bokeh_sampledata.stocks import MSFT

    folder = Path(cache_root) / f"msft-v{BUILTIN_VERSION}"
    columns = ("Date", "Open", "High", "Low", "Close", "Volume", "Adj. Close")
    keys = ("date", "open", "high", "low", "close", "volume", "adj_close")
    lines = [",".join(columns)]
    for index in range(len(MSFT["date"])):
        lines.append(",".join(str(MSFT[key][index]) for key in keys))
    return _write_once(folder, MSFT_FILE, "\n".join(lines) + "\n")


def _write_once(folder: Path, filename: str, content: str) -> tuple[Path, str]:
    path = folder / filename
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{filename}.partial"
        partial.write_text(content)
        partial.replace(path)  # atomic: a concurrent reader sees the whole file or none
    return folder, hashlib.sha256(path.read_bytes()).hexdigest()
