"""A trained Brain as a policy: its model folder, greedy episodes, their scores and videos.

Shared by training (periodic evaluations, the final test, videos), the `test` mode and the predictor.
Greedy acting runs the network in numpy (`model.numpy_forward`); nothing here imports TensorFlow
except reading and writing the Keras model file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from worker.runtime.context import RunContext

MODEL_FILE = "model.keras"
CONFIG_FILE = "agent.json"
EVALUATION_SEED_OFFSET = 1_000_000  # greedy evaluations play other starts than training does


@dataclass
class Network:
    """A trained Brain's weights and shape, as `train` saves it in a model folder."""

    weights: list[np.ndarray]
    config: dict[str, Any]


def read_network(model_dir: Path) -> Network:
    """The network of a model folder; ValueError if the folder is not one `train` wrote."""
    import keras

    config_path = Path(model_dir) / CONFIG_FILE
    if not config_path.exists():
        raise ValueError(f"{CONFIG_FILE}: missing from the model folder; not a lunar_lander model")
    config = json.loads(config_path.read_text())
    model = keras.models.load_model(Path(model_dir) / MODEL_FILE, compile=False)
    return Network(weights=model.get_weights(), config=config)


def save_network(model_dir: Path, weights: list[np.ndarray], config: dict[str, Any]) -> Path:
    """The Brain as model.keras plus agent.json (environment, spaces, layers, how it was trained)."""
    from worker.pipelines.lunar_lander.model import build_q_network

    model_dir.mkdir(parents=True, exist_ok=True)
    model = build_q_network(
        config["observation_size"], config["action_count"], config["hidden_layers"], config["activation"]
    )
    model.set_weights(weights)
    model.save(model_dir / MODEL_FILE)
    (model_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return model_dir


def play_greedy(env, q_values, *, seed: int, max_steps: int, record: bool = False) -> tuple[float, int, list]:
    """(score, steps, frames) of one episode choosing argmax Q, with frames if `record`."""
    state, _ = env.reset(seed=seed)
    frames = [env.render()] if record else []
    score, steps = 0.0, 0
    for steps in range(1, max_steps + 1):
        action = int(np.argmax(q_values(np.asarray(state, dtype=np.float32)[np.newaxis])[0]))
        state, reward, terminated, truncated, _ = env.step(action)
        score += float(reward)
        if record:
            frames.append(env.render())
        if terminated or truncated:
            break
    return score, steps, frames


def evaluate_greedy(env, q_values, *, episodes: int, seed: int, max_steps: int, should_stop=None) -> np.ndarray:
    """Scores of `episodes` greedy episodes from seeds seed, seed+1, ... (fewer if stopped)."""
    scores = []
    for index in range(episodes):
        if should_stop is not None and should_stop():
            break
        scores.append(play_greedy(env, q_values, seed=seed + index, max_steps=max_steps)[0])
    return np.array(scores, dtype=np.float64)


def test_metrics(scores: np.ndarray, solved_score: float) -> dict[str, float]:
    """The book's test() summary: mean and spread of greedy scores, and how many reach the target."""
    if len(scores) == 0:
        return {}
    mean = float(np.mean(scores))
    return {
        "test_score_mean": mean,
        "test_score_std": float(np.std(scores)),
        "test_solved_fraction": float(np.mean(scores >= solved_score)),
        "test_solved": float(mean >= solved_score),
    }


def record_video(
    ctx: RunContext, *, env_id: str, q_values, seed: int, max_steps: int, name: str
) -> dict[str, Any]:
    """An mp4 of one greedy episode, published as a `video` artifact; its score and steps."""
    from worker.pipelines.lunar_lander.environment import make_env, video_fps, write_mp4

    env = make_env(env_id, render=True)
    try:
        score, steps, frames = play_greedy(env, q_values, seed=seed, max_steps=max_steps, record=True)
        path = write_mp4(frames, ctx.artifacts_dir / "videos" / f"{name}.mp4", fps=video_fps(env))
    finally:
        env.close()
    title = f"Greedy episode ({name}): score {score:.1f} in {steps} steps"
    metadata = {"title": title, "score": score, "steps": steps, "seed": seed}
    ctx.log_artifact(path, kind="video", metadata=metadata)
    return {"name": f"videos/{path.name}", "score": score, "steps": steps}
