"""The chapter's figures from a training history: score (Figure 7), loss (4), Q-values (5, 6) and
epsilon against steps per episode (8)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure  # a bare Figure renders with Agg, no pyplot state (safe in a worker)

if TYPE_CHECKING:
    from worker.pipelines.lunar_lander.training import History

AVERAGE_WINDOW = 100


def moving_average(values: list[float], window: int = AVERAGE_WINDOW) -> np.ndarray:
    """The mean of the last `window` values at each position (fewer at the start), as the book's deque."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(values)
    averages = sums.copy()
    averages[window:] = sums[window:] - sums[:-window]
    return averages / np.minimum(np.arange(1, len(values) + 1), window)


def _figure(title: str, xlabel: str, ylabel: str):
    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.add_subplot()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


def plot_scores(history: History, path: Path, *, solved_score: float) -> None:
    episodes = np.arange(1, len(history.scores) + 1)
    figure, axes = _figure("Score per episode", "episode", "score")
    axes.plot(episodes, history.scores, color="tab:blue", alpha=0.35, linewidth=0.8, label="score")
    axes.plot(episodes, moving_average(history.scores), color="tab:blue", linewidth=2, label="100-episode average")
    if history.evaluations:
        evaluated, means = zip(*history.evaluations)
        axes.plot(evaluated, means, "o", color="tab:green", markersize=4, label="greedy evaluation")
    axes.axhline(solved_score, color="tab:red", linestyle="--", label=f"solved ({solved_score:g})")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)


def plot_loss(history: History, path: Path, **_) -> None:
    figure, axes = _figure("Loss", "training step", "loss")
    axes.plot(history.training_steps, history.losses, color="tab:purple", linewidth=1)
    if min(history.losses, default=0) > 0:
        axes.set_yscale("log")  # the book's loss spikes span decades
    figure.tight_layout()
    figure.savefig(path)


def plot_q_values(history: History, path: Path, **_) -> None:
    figure, axes = _figure("Predicted Q-values per batch", "training step", "Q")
    axes.plot(history.training_steps, history.q_max, color="tab:orange", linewidth=1, label="max Q")
    axes.plot(history.training_steps, history.q_mean, color="tab:green", linewidth=1, label="mean Q")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)


def plot_epsilon_steps(history: History, path: Path, **_) -> None:
    episodes = np.arange(1, len(history.steps) + 1)
    figure, axes = _figure("Epsilon and steps per episode", "episode", "steps per episode")
    axes.plot(episodes, history.steps, color="tab:gray", alpha=0.35, linewidth=0.8, label="steps")
    axes.plot(episodes, moving_average(history.steps), color="tab:gray", linewidth=2, label="100-episode average")
    epsilon_axes = axes.twinx()
    epsilon_axes.plot(episodes, history.epsilons, color="tab:red", linewidth=1.5, label="epsilon")
    epsilon_axes.set_ylabel("epsilon")
    epsilon_axes.set_ylim(0, 1.05)
    axes.legend(loc="upper left")
    epsilon_axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
