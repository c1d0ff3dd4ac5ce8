"""The book's learn() loop for `train` and `incremental`: epsilon-greedy episodes, experience replay,
target network copies; with checkpoints, greedy evaluations, videos and the chapter's figures.

Checkpoints hold both networks, Adam's state, epsilon, the episode counter, the random generator, the
replay memory and the history plotted at the end, so a run whose worker died resumes where it was.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.pipelines.base import TrainResult
from worker.pipelines.lunar_lander.agent import DQNAgent, ReplayMemory
from worker.pipelines.lunar_lander.environment import check_spaces, make_env
from worker.pipelines.lunar_lander.model import numpy_forward
from worker.pipelines.lunar_lander.policy import (
    EVALUATION_SEED_OFFSET,
    Network,
    evaluate_greedy,
    record_video,
    save_network,
    test_metrics,
)

if TYPE_CHECKING:
    from worker.pipelines.lunar_lander.pipeline import LunarLanderParams
    from worker.runtime.context import RunContext

# Networks, Adam, memory, the best evaluated network and the loop's state, in one file.
CHECKPOINT_FILE = "training.npz"


@dataclass
class History:
    """Everything plotted at the end; part of the checkpoint so a resumed run plots it all."""

    scores: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    epsilons: list[float] = field(default_factory=list)
    training_steps: list[int] = field(default_factory=list)  # x of the loss and Q curves
    losses: list[float] = field(default_factory=list)
    q_max: list[float] = field(default_factory=list)
    q_mean: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)  # (episode, mean greedy score)


class Training:
    """The book's learn() loop for `train` and `incremental`, with checkpoints, evaluation and videos."""

    def __init__(self, ctx: RunContext, env, params: LunarLanderParams, parent: Network | None):
        self.ctx, self.env, self.params = ctx, env, params
        observation_size, action_count = check_spaces(env, params.env_id)
        layers = parent.config["hidden_layers"] if parent else params.hidden_layers
        activation = parent.config["activation"] if parent else params.activation
        self.agent = DQNAgent(
            observation_size=observation_size, action_count=action_count, hidden_layers=layers, activation=activation,
            learning_rate=params.learning_rate, gamma=params.gamma, loss=params.loss, double_dqn=params.double_dqn,
            seed=params.seed,
        )
        self.config = {
            "env_id": params.env_id, "observation_size": observation_size, "action_count": action_count,
            "hidden_layers": list(layers), "activation": activation,
        }
        self.memory = ReplayMemory(params.memory_size, observation_size)
        self.evaluation_env = make_env(params.env_id)
        self.rng = np.random.default_rng(params.seed)
        self.history = History()
        self.epsilon = params.epsilon_start
        self.episode = 0  # episodes completed
        self.env_steps = 0
        self.training_steps = 0
        self.best: tuple[float, int, list[np.ndarray]] | None = None  # (evaluation score, episode, weights)
        self.solved_at: int | None = None
        self.solved_test: np.ndarray | None = None
        self.train_seconds = 0.0
        self._pending_step_metrics: list[tuple[int, dict[str, float]]] = []  # logged at the episode's end
        if parent is not None:
            self.agent.set_online_weights(parent.weights)
        self._resume()

    # Checkpoints ------------------------------------------------------------------------------------

    def _resume(self) -> None:
        checkpoint = self.ctx.checkpoint_dir / CHECKPOINT_FILE
        if not self.ctx.checkpoint_state() or not checkpoint.exists():
            return
        with np.load(checkpoint) as saved:
            self.agent.restore(saved)
            self.memory.restore(saved)
            state = json.loads(str(saved["state"]))
            best_weights = [saved[f"best_{index}"] for index in range(state["best"]["layers"])] if state["best"] else []
        self.rng.bit_generator.state = state["rng"]
        self.epsilon = state["epsilon"]
        self.episode = state["episode"]
        self.env_steps = state["env_steps"]
        self.training_steps = state["training_steps"]
        self.train_seconds = state["train_seconds"]
        self.history = History(**{key: list(value) for key, value in state["history"].items()})
        self.history.evaluations = [tuple(item) for item in self.history.evaluations]
        if state["best"]:
            self.best = (state["best"]["score"], state["best"]["episode"], best_weights)
        self.ctx.log(f"resuming after episode {self.episode} (epsilon {self.epsilon:.4f}, memory {len(self.memory)})")

    def _save_checkpoint(self) -> None:
        """One file, replaced atomically: the platform zips the folder on another thread, at any moment."""
        state = {
            "rng": self.rng.bit_generator.state, "epsilon": self.epsilon, "episode": self.episode,
            "env_steps": self.env_steps, "training_steps": self.training_steps, "train_seconds": self.train_seconds,
            "history": self.history.__dict__,
            "best": {"score": self.best[0], "episode": self.best[1], "layers": len(self.best[2])} if self.best else None,
        }
        arrays = {**self.agent.state_arrays(), **self.memory.state_arrays(), "state": np.array(json.dumps(state))}
        if self.best is not None:
            arrays |= {f"best_{index}": weights for index, weights in enumerate(self.best[2])}
        partial = self.ctx.checkpoint_dir / (CHECKPOINT_FILE + ".partial")
        with partial.open("wb") as handle:
            np.savez(handle, **arrays)
        os.replace(partial, self.ctx.checkpoint_dir / CHECKPOINT_FILE)
        self.ctx.save_checkpoint(self.episode, episode=self.episode)

    # The loop ---------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        params, ctx = self.params, self.ctx
        if self.episode == 0:
            ctx.log(f"{params.mode}: {params.episodes} episodes, epsilon from {self.epsilon}, preset {params.preset}")
        last_checkpoint = time.monotonic()
        try:
            while self.episode < params.episodes and self.solved_at is None:
                if ctx.should_stop():
                    break
                started = time.monotonic()
                epsilon = self.epsilon  # the episode's exploration, logged (the book logged its argument)
                score, steps = self._play_episode()
                seconds = time.monotonic() - started
                self.train_seconds += seconds
                self.episode += 1
                self._report_episode(score, steps, epsilon, seconds)
                if params.evaluate_every_episodes and self.episode % params.evaluate_every_episodes == 0:
                    self._evaluate()
                if params.video_every_episodes and self.episode % params.video_every_episodes == 0:
                    self._video(f"episode-{self.episode:06d}")
                if time.monotonic() - last_checkpoint >= ctx.checkpoint_interval and not ctx.should_stop():
                    self._save_checkpoint()
                    last_checkpoint = time.monotonic()
            return self._finish()
        finally:
            self.evaluation_env.close()

    def _play_episode(self) -> tuple[float, int]:
        """One episode of the book's learn(): act, remember, replay, copy to target when it ends."""
        params, agent, memory, rng = self.params, self.agent, self.memory, self.rng
        env = self.env
        state, _ = env.reset(seed=params.seed + self.episode)
        state = np.asarray(state, dtype=np.float32)
        decay_per_step = params.epsilon_decay_per == "step"
        learn_every, learning_starts, batch_size = params.learn_every_steps, params.learning_starts, params.batch_size
        target_every = params.target_update_steps
        score, steps = 0.0, 0
        for steps in range(1, params.max_steps + 1):
            action = agent.act(state, self.epsilon, rng)
            next_state, reward, terminated, truncated, _ = env.step(action)
            next_state = np.asarray(next_state, dtype=np.float32)
            out_of_time = truncated or steps == params.max_steps
            done = terminated or (out_of_time and params.truncation_is_terminal)
            memory.add(state, action, reward, next_state, done)
            score += float(reward)
            state = next_state
            self.env_steps += 1
            if len(memory) > max(learning_starts, batch_size - 1) and self.env_steps % learn_every == 0:
                agent.learn(memory.sample(batch_size, rng))
                self.training_steps += 1
                if self.training_steps % params.metrics_every_steps == 0:
                    self._record_step_statistics()
            if target_every and self.env_steps % target_every == 0:
                agent.update_target()
            if decay_per_step:
                self.epsilon = max(params.epsilon_min, self.epsilon * params.epsilon_decay)
            if terminated or out_of_time:
                break
        if not target_every and self.training_steps:
            agent.update_target()  # book: at the end of every training episode
        if not decay_per_step and self.epsilon > params.epsilon_min:  # book: epsilon_update once per episode
            self.epsilon = max(params.epsilon_min, self.epsilon * params.epsilon_decay)
        return score, steps

    def _record_step_statistics(self) -> None:
        statistics = self.agent.take_step_statistics()
        if statistics is None:
            return
        self.history.training_steps.append(self.training_steps)
        self.history.losses.append(float(statistics["loss"]))
        self.history.q_max.append(float(statistics["q_max"]))
        self.history.q_mean.append(float(statistics["q_mean"]))
        self._pending_step_metrics.append((self.training_steps, statistics))

    def _report_episode(self, score: float, steps: int, epsilon: float, seconds: float) -> None:
        ctx, history = self.ctx, self.history
        history.scores.append(score)
        history.steps.append(steps)
        history.epsilons.append(epsilon)
        # Per training step metrics first: the run's current step ends on the episode.
        for training_step, statistics in self._pending_step_metrics:
            ctx.log_metrics(training_step, **{key: float(value) for key, value in statistics.items()})
        self._pending_step_metrics = []
        average = float(np.mean(history.scores[-100:]))
        ctx.log_metrics(
            self.episode, score=score, score_avg100=average, steps=steps, epsilon=epsilon,
            env_steps_per_second=steps / max(seconds, 1e-9),
        )
        ctx.progress(self.episode, self.params.episodes, f"episode {self.episode}/{self.params.episodes}")
        # The book's line, with the agent's real epsilon (book bug: it printed the argument, a constant).
        ctx.log(f"episode: {self.episode} score: {score:.2f} avg_score: {average:.2f} actions {steps} "
                f"epsilon {epsilon:.4f}")

    # Evaluation, videos, the end --------------------------------------------------------------------

    def _evaluation_seed(self) -> int:
        return self.params.seed + EVALUATION_SEED_OFFSET

    def _evaluate(self) -> None:
        """A greedy evaluation; the best network so far is kept. Solved once a 100-episode test says so."""
        params = self.params
        scores = evaluate_greedy(
            self.evaluation_env, self.agent.q_values, episodes=params.evaluation_episodes,
            seed=self._evaluation_seed() + 10_000 * self.episode, max_steps=params.max_steps,
            should_stop=self.ctx.should_stop,
        )
        if len(scores) < params.evaluation_episodes:
            return  # cancelled meanwhile
        mean = float(np.mean(scores))
        self.history.evaluations.append((self.episode, mean))
        self.ctx.log_metrics(self.episode, evaluation_score=mean)
        if self.best is None or mean > self.best[0]:
            self.best = (mean, self.episode, self.agent.online_weights())
        self.ctx.log(f"greedy evaluation after episode {self.episode}: {mean:.2f} over {len(scores)} episodes")
        if params.stop_when_solved and mean >= params.solved_score and params.test_episodes:
            test = self._test(self.agent.q_values)
            if len(test) == params.test_episodes and float(np.mean(test)) >= params.solved_score:
                self.solved_at, self.solved_test = self.episode, test
                self.best = (float(np.mean(test)), self.episode, self.agent.online_weights())
                self.ctx.log(
                    f"solved after {self.episode} episodes: {np.mean(test):.2f} over {len(test)} greedy episodes"
                )

    def _test(self, q_values) -> np.ndarray:
        """The book's test() on the network as it is: test_episodes greedy episodes."""
        return evaluate_greedy(
            self.evaluation_env, q_values, episodes=self.params.test_episodes, seed=self._evaluation_seed(),
            max_steps=self.params.max_steps, should_stop=self.ctx.should_stop,
        )

    def _video(self, name: str, q_values=None) -> dict[str, Any]:
        return record_video(
            self.ctx, env_id=self.params.env_id, q_values=q_values or self.agent.q_values,
            seed=self.params.seed + EVALUATION_SEED_OFFSET // 2 + self.episode, max_steps=self.params.max_steps,
            name=name,
        )

    def _final_weights(self) -> tuple[list[np.ndarray], str]:
        """The network to keep: the last one, or the best evaluated if evaluations rated it higher."""
        last = self.agent.online_weights()
        if self.solved_at is not None:
            return self.best[2], f"solved at episode {self.solved_at}"
        if self.best is None:
            return last, "last"
        last_scores = evaluate_greedy(
            self.evaluation_env, self.agent.q_values, episodes=self.params.evaluation_episodes,
            seed=self._evaluation_seed() + 10_000 * self.episode, max_steps=self.params.max_steps,
        )
        if len(last_scores) and float(np.mean(last_scores)) >= self.best[0]:
            return last, "last"
        return self.best[2], f"best evaluation (episode {self.best[1]}, {self.best[0]:.2f})"

    def _finish(self) -> TrainResult:
        ctx, params, history = self.ctx, self.params, self.history
        stopped = ctx.should_stop()
        self._report_pending_statistics()
        if not stopped and self.ctx.checkpoint_state() != {"step": self.episode, "episode": self.episode}:
            self._save_checkpoint()
        weights, chosen = self._final_weights()
        ctx.log(f"keeping the network: {chosen}")
        activation = self.config["activation"]

        def q_values(states):
            return numpy_forward(weights, states, activation)

        summary: dict[str, Any] = {
            "episodes_played": self.episode, "env_steps": self.env_steps, "training_steps": self.training_steps,
            "train_seconds": round(self.train_seconds, 2),
            "env_steps_per_second": round(self.env_steps / max(self.train_seconds, 1e-9), 1),
            "final_epsilon": self.epsilon, "network": chosen, "solved_at_episode": self.solved_at, "stopped": stopped,
            "parameters": int(sum(w.size for w in weights)),
        }
        config = {**self.config, "trained": {k: summary[k] for k in ("episodes_played", "env_steps", "network")},
                  "params": params.model_dump(mode="json")}
        model_dir = save_network(ctx.artifacts_dir / "model", weights, config)
        write_history(ctx, history, params.solved_score)
        if stopped:
            ctx.log("cancelled: the network so far is saved, the test skipped")
            return TrainResult(metrics={}, model_dir=model_dir, summary=summary)
        summary["video"] = self._video("final", q_values)
        test = self.solved_test if self.solved_test is not None else self._test(q_values)
        metrics = {
            "score_avg100": float(np.mean(history.scores[-100:])) if history.scores else 0.0,
            "env_steps_per_second": summary["env_steps_per_second"],
            **test_metrics(test, params.solved_score),
        }
        if self.solved_at is not None:
            metrics["solved_at_episode"] = float(self.solved_at)
        ctx.log_metrics(self.episode, **metrics)
        if "test_score_mean" in metrics:
            ctx.log(f"test over {len(test)} greedy episodes: mean score {metrics['test_score_mean']:.2f}")
        return TrainResult(metrics=metrics, model_dir=model_dir, summary=summary)

    def _report_pending_statistics(self) -> None:
        for training_step, statistics in self._pending_step_metrics:
            self.ctx.log_metrics(training_step, **{key: float(value) for key, value in statistics.items()})
        self._pending_step_metrics = []


# Reports and plots ------------------------------------------------------------------------------


def write_history(ctx: RunContext, history: History, solved_score: float) -> None:
    """episodes.csv (the book's log line per episode) and the book's four figures."""
    path = ctx.artifacts_dir / "episodes.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["episode", "score", "score_avg100", "steps", "epsilon"])
        for index, (score, steps, epsilon) in enumerate(zip(history.scores, history.steps, history.epsilons)):
            average = float(np.mean(history.scores[max(0, index - 99) : index + 1]))
            writer.writerow([index + 1, f"{score:.3f}", f"{average:.3f}", steps, f"{epsilon:.5f}"])
    ctx.log_artifact(path, kind="report", metadata={"title": "Episodes: score, 100-episode average, steps, epsilon"})
    if not history.scores:
        return
    from worker.pipelines.lunar_lander import plots

    for filename, title, draw in (
        ("score.png", "Score per episode, its 100-episode average and the 200 line", plots.plot_scores),
        ("loss.png", "Loss per training step", plots.plot_loss),
        ("q_values.png", "Max and mean predicted Q per training step", plots.plot_q_values),
        ("epsilon_steps.png", "Epsilon and steps per episode", plots.plot_epsilon_steps),
    ):
        if filename in ("loss.png", "q_values.png") and not history.training_steps:
            continue
        draw(history, ctx.artifacts_dir / filename, solved_score=solved_score)
        ctx.log_artifact(ctx.artifacts_dir / filename, kind="plot", metadata={"title": title})
