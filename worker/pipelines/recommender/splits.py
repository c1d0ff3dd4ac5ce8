"""Which time split a dataset kind takes by default, and the submit-time check of a split.

The check runs in the web process when a run is submitted, so it reads only the statistics that the
dataset kind's `inspect` stored at upload (`first`, `last`, `rows`, `rows_at_first`,
`users_with_two_or_more`) and imports nothing heavy (no pandas). It answers only what those figures
settle for certain: a split it cannot judge from them (a gap in the data between the two dates, or
MovieLens ratings thresholded by `min_rating` for the splits that depend on every row) passes here
and is caught by `data.split_interactions` when the run trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

# On MovieLens a global time split leaves only a couple of dozen users on both sides, so its default
# holds out each user's latest ratings; Online Retail takes the book's dates when the data covers them.
DEFAULT_SPLIT = {"movielens": "per_user", "online_retail": "dates", "interactions": "ratio"}


def split_errors(params: Any, kind: str, stats: Mapping[str, Any]) -> dict[str, list[str]]:
    """Messages per field when the split would leave the train or validation set empty; {} otherwise.

    Every message is under `split`; the field that decides the boundary (`train_end`,
    `validation_days` or `validation_fraction`) gets the same message too.
    """
    try:
        first = datetime.fromisoformat(str(stats["first"]))
        last = datetime.fromisoformat(str(stats["last"]))
        rows = int(stats["rows"])
    except (KeyError, TypeError, ValueError):
        return {}  # statistics from before this check existed, or none (a built-in without them)
    span = f"the data spans {first:%Y-%m-%d %H:%M}..{last:%Y-%m-%d %H:%M}"
    train_end, validation_end = _midnight(params.train_end), _midnight(params.validation_end)
    every_row_counts = not (kind == "movielens" and params.min_rating is not None)
    mode = params.split
    if mode == "auto":
        mode = DEFAULT_SPLIT.get(kind, "ratio")
        # As data.resolve_split: the book's dates when the data may cover them, else ratio.
        if mode == "dates" and not (first < train_end and _may_overlap(first, last, train_end, validation_end)):
            mode = "ratio"
    problem, field = None, None
    if mode == "dates":
        if first >= train_end:
            problem, field = f"the train set would be empty: nothing before train_end {params.train_end}", "train_end"
        elif last < train_end:  # with training rows before train_end, only this leaves validation empty
            problem = f"the validation set would be empty: nothing from {params.train_end} to {params.validation_end}"
            field = "train_end"
    elif mode == "last_days" and every_row_counts:
        if first > last - timedelta(days=params.validation_days):
            problem = f"the train set would be empty: every interaction is in the last {params.validation_days} days"
            field = "validation_days"
    elif mode == "ratio" and every_row_counts and "rows_at_first" in stats:
        # As data.split_interactions: training is everything before the timestamp of row n*(1-fraction).
        if min(int(rows * (1 - params.validation_fraction)), rows - 1) < int(stats["rows_at_first"]):
            problem = (
                f"the train set would be empty: the latest {params.validation_fraction:.0%} of interactions starts "
                "at the first timestamp"
            )
            field = "validation_fraction"
    elif mode == "per_user" and "users_with_two_or_more" in stats:
        if int(stats["users_with_two_or_more"]) == 0:
            problem = "the validation set would be empty: no known user has two or more interactions to hold one out"
    if problem is None:
        return {}
    message = f"split={mode}: {problem} ({span})."
    return {"split": [message], **({field: [message]} if field else {})}


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _may_overlap(first: datetime, last: datetime, start: datetime, end: datetime) -> bool:
    """Whether [first, last] and [start, end] share an instant (the data may have rows in between)."""
    return first <= end and last >= start
