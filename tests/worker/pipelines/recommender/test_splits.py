"""The submit-time split check: judged from upload statistics, and in agreement with the split itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worker.pipelines.base import ParamsError
from worker.pipelines.recommender import data
from worker.pipelines.recommender.pipeline import MOVIELENS_SMALL_STATS, pipeline
from worker.pipelines.recommender.splits import split_errors

REPO_ROOT = Path(__file__).resolve().parents[4]
RETAIL_SPAN = "(the data spans 2010-12-01 08:26..2010-12-02 11:00)."


def params(**values):
    return pipeline.resolve_params(values)


def test_inspect_stores_what_the_check_needs(retail_folder, movielens_latest):
    stats = data.inspect_online_retail(retail_folder)
    assert {key: stats[key] for key in ("rows", "first", "last", "rows_at_first", "users_with_two_or_more")} == {
        "rows": 8,
        "first": "2010-12-01 08:26:00",
        "last": "2010-12-02 11:00:00",
        "rows_at_first": 2,  # both rows of invoice 536365
        "users_with_two_or_more": 2,  # 17850 and 13047; the unknown customer is not a user
    }
    assert data.inspect_movielens(movielens_latest)["users_with_two_or_more"] == 2


def test_the_builtin_movielens_statistics_are_what_inspect_finds(tmp_path):
    folder, _ = data.build_movielens_small(tmp_path)
    assert data.inspect_movielens(folder) == MOVIELENS_SMALL_STATS
    assert pipeline.builtin_dataset("movielens_small").stats == MOVIELENS_SMALL_STATS


def test_the_books_dates_on_the_december_2010_sample_are_refused_naming_the_split(retail_folder):
    stats = data.inspect_online_retail(retail_folder)
    message = f"split=dates: the validation set would be empty: nothing from 2011-10-09 to 2011-11-09 {RETAIL_SPAN}"

    assert split_errors(params(split="dates"), "online_retail", stats) == {"split": [message], "train_end": [message]}
    with pytest.raises(ParamsError) as raised:
        pipeline.check_dataset(params(split="dates"), kind="online_retail", stats=stats)
    assert raised.value.errors == {"split": [message], "train_end": [message]}
    # auto takes ratio on data that does not cover the book's dates, as training does: accepted.
    pipeline.check_dataset(params(), kind="online_retail", stats=stats)


@pytest.mark.parametrize(
    "values, field, problem",
    [
        (
            {"split": "dates", "train_end": "2010-12-01", "validation_end": "2010-12-03"},
            "train_end",
            "split=dates: the train set would be empty: nothing before train_end 2010-12-01",
        ),
        (
            {"split": "last_days", "validation_days": 2},
            "validation_days",
            "split=last_days: the train set would be empty: every interaction is in the last 2 days",
        ),
        (
            {"split": "ratio", "validation_fraction": 0.8},
            "validation_fraction",
            "split=ratio: the train set would be empty: the latest 80% of interactions starts at the first timestamp",
        ),
        (
            {"validation_fraction": 0.8},  # auto: ratio, the data does not cover the book's dates
            "validation_fraction",
            "split=ratio: the train set would be empty: the latest 80% of interactions starts at the first timestamp",
        ),
    ],
)
def test_each_mode_names_the_field_that_empties_a_set(retail_folder, values, field, problem):
    message = f"{problem} {RETAIL_SPAN}"
    assert split_errors(params(**values), "online_retail", data.inspect_online_retail(retail_folder)) == {
        "split": [message],
        field: [message],
    }


def test_per_user_needs_a_user_with_two_interactions(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n2,10,5.0,1260759300\n")
    stats = data.inspect_movielens(tmp_path)

    assert split_errors(params(), "movielens", stats) == {
        "split": [
            "split=per_user: the validation set would be empty: no known user has two or more interactions to hold "
            "one out (the data spans 2009-12-14 02:52..2009-12-14 02:55)."
        ]
    }
    with pytest.raises(ValueError, match="split=per_user: the validation set is empty"):
        split(data.load_interactions(tmp_path, "movielens"), pipeline.resolve_params({}))


def test_what_the_statistics_cannot_settle_is_left_to_training(movielens_latest):
    stats = data.inspect_movielens(movielens_latest)
    # min_rating drops rows the statistics counted: ratio and last_days cannot be judged from them.
    assert split_errors(params(split="ratio", validation_fraction=0.9, min_rating=3), "movielens", stats) == {}
    assert split_errors(params(split="last_days", validation_days=3650, min_rating=3), "movielens", stats) == {}
    # ...but no rating before train_end stays true whatever min_rating drops.
    assert "split" in split_errors(params(split="dates", train_end="1990-01-01", min_rating=3), "movielens", stats)
    # A built-in dataset row without statistics, or statistics from before this check: accepted.
    assert split_errors(params(split="dates"), "movielens", {"title": "MovieLens"}) == {}


def split(interactions, resolved):
    mode, _ = data.resolve_split(
        interactions, resolved.split, train_end=resolved.train_end, validation_end=resolved.validation_end
    )
    return data.split_interactions(
        interactions,
        mode,
        train_end=resolved.train_end,
        validation_end=resolved.validation_end,
        validation_days=resolved.validation_days,
        validation_fraction=resolved.validation_fraction,
    )


SPLITS = [
    {"split": "auto"},
    {"split": "dates"},
    {"split": "dates", "train_end": "2010-12-01", "validation_end": "2010-12-03"},
    {"split": "dates", "train_end": "2010-12-02", "validation_end": "2010-12-03"},
    {"split": "dates", "train_end": "2010-12-03", "validation_end": "2010-12-04"},
    {"split": "dates", "train_end": "2000-01-01", "validation_end": "2001-01-01"},
    {"split": "last_days", "validation_days": 1},
    {"split": "last_days", "validation_days": 2},
    {"split": "ratio", "validation_fraction": 0.5},
    {"split": "ratio", "validation_fraction": 0.75},
    {"split": "ratio", "validation_fraction": 0.8},
    {"split": "auto", "validation_fraction": 0.8},
    {"split": "per_user"},
]


@pytest.mark.parametrize("values", SPLITS, ids=lambda values: "-".join(str(value) for value in values.values()))
def test_the_check_refuses_exactly_the_splits_that_fail_in_training(retail_folder, values):
    resolved = params(**values)
    interactions = data.load_interactions(retail_folder, "online_retail")
    try:
        split(interactions, resolved)
    except ValueError as error:
        failure = str(error)
    else:
        failure = None

    errors = split_errors(resolved, "online_retail", data.inspect_online_retail(retail_folder))

    assert bool(errors) == (failure is not None), (errors, failure)
    if failure is not None:  # the same set named at submit and in training
        assert errors["split"][0].split(" would be empty")[0] == failure.split(" is empty")[0]


def test_the_check_imports_nothing_heavy():
    # It runs in the web process at submit (see tests/test_import_rules.py for the listing itself).
    script = (
        "import sys\n"
        "from worker.pipelines.base import ParamsError, get_pipeline\n"
        "pipeline = get_pipeline('recommender')\n"
        "stats = {'rows': 8, 'first': '2010-12-01 08:26:00', 'last': '2010-12-02 11:00:00', 'rows_at_first': 2}\n"
        "try:\n"
        "    pipeline.check_dataset(pipeline.resolve_params({'split': 'dates'}), kind='online_retail', stats=stats)\n"
        "except ParamsError as error:\n"
        "    print(sorted(error.errors))\n"
        "print(sorted({'pandas', 'scipy', 'tensorflow', 'keras', 'implicit'} & set(sys.modules)))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.splitlines() == ["['split', 'train_end']", "[]"]
