"""How every recommender is scored, the same way for all of them (plain numpy, no TensorFlow).

Static scenario (the book's `precision`): each validation group (an invoice, or a user's held-out
ratings) gets one list of recommendations for its user; precision@5 is hits / (groups x 5), where
an item bought twice in the group counts twice, as in the book. Recall, NDCG and MAP at k use the
group's distinct items (binary relevance) and are averaged over groups; coverage is the share of
training items that appear in any list. Sequential scenario (the book's `accuracy_k`): at every
position of a group the model predicts the next item; top-k accuracy is the share of positions whose
item was among the k predictions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SCORE_CHUNK = 512  # users scored at once: 512 x 10k items of float32 is 20 MB


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k highest scores per row, highest first (ties: lowest index first)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def recommend_groups(
    score_users: Callable[[np.ndarray], np.ndarray],
    group_users: np.ndarray,
    popularity: np.ndarray,
    k: int,
    *,
    seen: list[np.ndarray] | None = None,
) -> np.ndarray:
    """(groups, k) item indices: the model's top k for known users, the most popular for unknown ones.

    `score_users(user_indices)` returns (n, items) scores; `seen`, when given, holds each known user's
    training items, which are then never recommended to them.
    """
    recommendations = np.tile(top_k(popularity[np.newaxis, :], k)[0], (len(group_users), 1))
    known = np.flatnonzero(group_users >= 0)
    for start in range(0, len(known), SCORE_CHUNK):
        rows = known[start : start + SCORE_CHUNK]
        scores = np.array(score_users(group_users[rows]), dtype=np.float32, copy=True)
        if seen is not None:
            for row, user in enumerate(group_users[rows]):
                scores[row, seen[user]] = -np.inf
        recommendations[rows] = top_k(scores, k)
    return recommendations


def precision_at_k(
    group_indptr: np.ndarray, true_items: np.ndarray, predicted: np.ndarray, k: int | None = None
) -> float:
    """The book's precision: hits / (groups x k), each bought row that is among the group's list a hit.

    `k` defaults to the lists' length; a catalogue smaller than k gives shorter lists, still over k.
    """
    k = k or predicted.shape[1]
    return int(hits_per_group(group_indptr, true_items, predicted).sum()) / (len(predicted) * k)


def hits_per_group(group_indptr: np.ndarray, true_items: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per group, how many of its bought rows are among its list (an item bought twice counts twice)."""
    return np.array(
        [
            int(np.isin(true_items[group_indptr[group] : group_indptr[group + 1]], predicted[group]).sum())
            for group in range(len(predicted))
        ],
        dtype=np.int64,
    )


def ranking_metrics(
    group_indptr: np.ndarray, true_items: np.ndarray, predicted: np.ndarray, k: int
) -> dict[str, float]:
    """Recall@k, NDCG@k and MAP@k over each group's distinct items, averaged over groups."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall, ndcg, average_precision = [], [], []
    for group in range(len(predicted)):
        relevant = np.unique(true_items[group_indptr[group] : group_indptr[group + 1]])
        hits = np.isin(predicted[group, :k], relevant).astype(np.float64)
        recall.append(hits.sum() / len(relevant))
        ideal = discounts[: min(len(relevant), k)].sum()
        ndcg.append((hits * discounts[: len(hits)]).sum() / ideal)
        precision_at_rank = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        average_precision.append((precision_at_rank * hits).sum() / min(len(relevant), k))
    return {
        f"recall_at_{k}": float(np.mean(recall)),
        f"ndcg_at_{k}": float(np.mean(ndcg)),
        f"map_at_{k}": float(np.mean(average_precision)),
    }


def coverage(predicted: np.ndarray, num_items: int) -> float:
    """Share of the catalogue (training items) recommended to at least one group."""
    return len(np.unique(predicted)) / num_items


def top_k_accuracy(true_items: np.ndarray, predicted: np.ndarray) -> float:
    """The book's accuracy_k: share of rows whose true item is among that row's predictions."""
    return float(np.mean((predicted == true_items[:, np.newaxis]).any(axis=1)))


def popularity_with_removal(
    group_indptr: np.ndarray, true_items: np.ndarray, popularity: np.ndarray, k: int
) -> np.ndarray:
    """The book's sequential baseline: the k most popular items, minus those already bought in the group."""
    order = np.argsort(-popularity, kind="stable")
    k = min(k, len(order))
    # A group that bought up the whole catalogue gets shorter lists, padded with an index of no item.
    predicted = np.full((len(true_items), k), len(order), dtype=np.int64)
    for group in range(len(group_indptr) - 1):
        removed: set[int] = set()
        for row in range(group_indptr[group], group_indptr[group + 1]):
            candidates = [item for item in order[: k + len(removed)] if item not in removed][:k]
            predicted[row, : len(candidates)] = candidates
            removed.add(int(true_items[row]))
    return predicted


def static_metrics(
    group_indptr: np.ndarray,
    true_items: np.ndarray,
    predicted: np.ndarray,
    *,
    k: int,
    num_items: int,
    group_users: np.ndarray | None = None,
) -> dict[str, float]:
    """precision@5 (the book's, on the first 5 of each list) and recall/NDCG/MAP/coverage at k.

    With `group_users` (-1: an unknown customer), also precision@5 over the groups of known users
    only: unknown customers get the popularity list from every model (as in the book), so on data
    with many of them the pooled figure hides how much a model does for the users it knows.
    """
    metrics = {
        "precision_at_5": precision_at_k(group_indptr, true_items, predicted[:, :5], 5),
        **ranking_metrics(group_indptr, true_items, predicted, k),
        f"coverage_at_{k}": coverage(predicted, num_items),
    }
    if group_users is not None and (group_users >= 0).any():
        known = group_users >= 0
        hits = hits_per_group(group_indptr, true_items, predicted[:, :5])
        metrics["precision_at_5_known_users"] = int(hits[known].sum()) / (int(known.sum()) * 5)
    return metrics
