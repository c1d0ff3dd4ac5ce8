"""The recommender metrics against small cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.pipelines.recommender import evaluation

# Two groups: rows 0..2 bought items 1, 1, 2 (item 1 twice); rows 3..4 bought 3 and 4.
INDPTR = np.array([0, 3, 5])
TRUE = np.array([1, 1, 2, 3, 4])


def test_precision_is_the_books_hits_over_groups_times_k():
    predicted = np.array([[1, 5, 6, 7, 8], [3, 4, 0, 10, 11]])

    # group 0: item 1 bought twice counts twice (2 hits), item 2 missed; group 1: 2 hits. 4 / (2 x 5).
    assert evaluation.precision_at_k(INDPTR, TRUE, predicted) == 0.4


def test_precision_divides_by_k_even_when_the_catalogue_is_smaller():
    assert evaluation.precision_at_k(INDPTR, TRUE, np.array([[1, 2], [3, 9]]), 5) == 4 / 10


def test_recall_ndcg_map_use_each_groups_distinct_items():
    predicted = np.array([[1, 5, 2], [0, 3, 9]])

    metrics = evaluation.ranking_metrics(INDPTR, TRUE, predicted, 3)

    ideal = 1 + 1 / math.log2(3)  # two relevant items in each group
    assert metrics["recall_at_3"] == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert metrics["ndcg_at_3"] == pytest.approx(((1 + 1 / math.log2(4)) / ideal + (1 / math.log2(3)) / ideal) / 2)
    assert metrics["map_at_3"] == pytest.approx(((1 / 1 + 2 / 3) / 2 + (1 / 2) / 2) / 2)


def test_a_perfect_list_scores_one():
    metrics = evaluation.ranking_metrics(INDPTR, TRUE, np.array([[2, 1, 7], [4, 3, 8]]), 3)

    assert metrics == {"recall_at_3": 1.0, "ndcg_at_3": 1.0, "map_at_3": 1.0}


def test_items_unseen_in_training_count_as_misses():
    # Two different unseen items (-1, -2) are two relevant items that no list can hold.
    metrics = evaluation.ranking_metrics(np.array([0, 3]), np.array([5, -1, -2]), np.array([[5, 0]]), 2)

    assert metrics["recall_at_2"] == pytest.approx(1 / 3)


def test_coverage_is_the_share_of_items_recommended():
    assert evaluation.coverage(np.array([[1, 5, 2], [0, 3, 5]]), 12) == 5 / 12


def test_top_k_accuracy_is_the_books_accuracy_k():
    assert evaluation.top_k_accuracy(np.array([1, 2, 3]), np.array([[1, 0], [0, 0], [3, 2]])) == pytest.approx(2 / 3)


def test_popularity_with_removal_drops_what_was_bought_in_the_group():
    popularity = np.array([5.0, 4.0, 3.0, 2.0, 1.0])

    predicted = evaluation.popularity_with_removal(np.array([0, 3, 4]), np.array([0, 1, 4, 1]), popularity, 2)

    # Group 0 buys 0, 1, 4: 0 and 1 leave the list in turn; group 1 starts afresh.
    assert predicted.tolist() == [[0, 1], [1, 2], [2, 3], [0, 1]]


def test_top_k_orders_by_score_then_lowest_index():
    assert evaluation.top_k(np.array([[0.1, 0.5, 0.5, 0.2], [3.0, 2.0, 1.0, 0.0]]), 3).tolist() == [
        [1, 2, 3],
        [0, 1, 2],
    ]


def test_unknown_users_get_the_popular_items_and_seen_items_are_excluded():
    popularity = np.array([1.0, 9.0, 5.0, 0.0])
    model_scores = np.array([[4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 1.0, 2.0]])

    predicted = evaluation.recommend_groups(
        lambda users: model_scores[users],
        np.array([0, -1, 1]),
        popularity,
        2,
        seen=[np.array([0]), np.array([], np.int64)],
    )

    assert predicted.tolist() == [[1, 2], [1, 2], [3, 2]]


def test_static_metrics_report_the_books_precision_at_5_and_the_rest_at_k():
    predicted = np.array([[1, 5, 6, 7, 8, 2], [3, 4, 0, 10, 11, 12]])

    metrics = evaluation.static_metrics(INDPTR, TRUE, predicted, k=6, num_items=13)

    assert metrics["precision_at_5"] == 0.4  # the first 5 of each list, as in the book
    assert metrics["recall_at_6"] == 1.0
    assert metrics["coverage_at_6"] == 12 / 13
    assert set(metrics) == {"precision_at_5", "recall_at_6", "ndcg_at_6", "map_at_6", "coverage_at_6"}


def test_precision_of_known_users_leaves_out_the_groups_of_unknown_customers():
    # Group 0 (an unknown customer, -1) has 2 hits, group 1 (user 4) has 1 hit of its 2 rows.
    predicted = np.array([[1, 5, 6, 7, 8], [3, 9, 0, 10, 11]])

    metrics = evaluation.static_metrics(INDPTR, TRUE, predicted, k=5, num_items=13, group_users=np.array([-1, 4]))

    assert metrics["precision_at_5"] == 3 / 10
    assert metrics["precision_at_5_known_users"] == 1 / 5
    assert evaluation.hits_per_group(INDPTR, TRUE, predicted).tolist() == [2, 1]
    unknown_only = evaluation.static_metrics(INDPTR, TRUE, predicted, k=5, num_items=13, group_users=np.array([-1, -1]))
    assert "precision_at_5_known_users" not in unknown_only
