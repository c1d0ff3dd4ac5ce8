"""The lunar_lander pipeline: params and presets, training modes, resume, cancel, predict."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from worker.pipelines.base import ParamsError, PredictInput, get_pipeline
from worker.runtime.local import LocalRunContext

from .conftest import TINY

# CartPole: the quick environment of the chapter's intro, for tests that only count episodes.
CARTPOLE = {"env_id": "CartPole-v1", "memory_size": 300, "test_episodes": 1, "video_every_episodes": 0, "max_steps": 40}


@pytest.fixture
def pipeline():
    return get_pipeline("lunar_lander")


# Params ------------------------------------------------------------------------------------------


def test_defaults_are_the_books(pipeline):
    assert pipeline.resolve_params(None).model_dump() == {
        "mode": "train",
        "preset": "book",
        "env_id": "LunarLander-v3",
        "episodes": 5000,
        "max_steps": 1000,
        "seed": 0,
        "hidden_layers": [32, 32],
        "activation": "relu",
        "loss": "mse",
        "learning_rate": 0.0001,
        "batch_size": 32,
        "gamma": 0.99,
        "memory_size": 250_000,
        "epsilon_start": 1.0,
        "epsilon_min": 0.01,
        "epsilon_decay": 0.9994,
        "epsilon_decay_per": "episode",
        "learn_every_steps": 1,
        "learning_starts": 32,
        "target_update_steps": 0,
        "double_dqn": True,
        "truncation_is_terminal": True,
        "evaluate_every_episodes": 0,
        "evaluation_episodes": 10,
        "stop_when_solved": False,
        "solved_score": 200.0,
        "test_episodes": 100,
        "video_every_episodes": 500,
        "metrics_every_steps": 100,
    }
    assert pipeline.default_dataset is None and pipeline.dataset_kinds == ()
    assert pipeline.predict_mode == "sync"


def test_mode_and_preset_resolve_the_dependent_defaults(pipeline):
    incremental = pipeline.resolve_params({"mode": "incremental"})
    assert (incremental.episodes, incremental.epsilon_start) == (100, 0.01)
    test = pipeline.resolve_params({"mode": "test"})
    assert (test.episodes, test.epsilon_start) == (100, 0.0)
    fast = pipeline.resolve_params({"preset": "fast", "batch_size": 32})
    assert fast.hidden_layers == [128, 128] and fast.loss == "huber" and fast.learn_every_steps == 4
    assert fast.batch_size == 32  # given explicitly: the preset does not override it
    assert fast.episodes == 1000 and fast.stop_when_solved and fast.epsilon_decay_per == "step"


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        ({"epochs": 10}, {"epochs": ["Unknown parameter."]}),
        ({"mode": "play"}, {"mode": ["Input should be 'train', 'incremental' or 'test'"]}),
        ({"preset": "slow"}, {"preset": ["Input should be 'book' or 'fast'"]}),
        ({"episodes": 0}, {"episodes": ["Input should be greater than 0"]}),
        ({"hidden_layers": []}, {"hidden_layers": ["List should have at least 1 item after validation, not 0"]}),
        ({"epsilon_decay": 1.5}, {"epsilon_decay": ["Input should be less than or equal to 1"]}),
    ],
)
def test_invalid_params_are_rejected_by_field(pipeline, raw, errors):
    with pytest.raises(ParamsError) as raised:
        pipeline.resolve_params(raw)
    assert raised.value.errors == errors


def test_states_are_answered_at_once_and_rollouts_on_the_batch_queue(pipeline):
    assert pipeline.predict_mode_for(PredictInput(data={"state": [0.0] * 8})) == "sync"
    assert pipeline.predict_mode_for(PredictInput(data={"rollout": {"seed": 1}})) == "async"


# Training ------------------------------------------------------------------------------------------


def model_digest(model_dir: Path) -> str:
    return hashlib.sha256(b"".join(path.read_bytes() for path in sorted(model_dir.rglob("*")) if path.is_file())).hexdigest()


@pytest.mark.tf
def test_tiny_run_reports_metrics_checkpoints_plots_videos_and_the_model(trained):
    ctx, result = trained
    assert sorted(ctx.metrics["score"]) == [1, 2, 3]
    assert sorted(ctx.metrics["epsilon"]) == [1, 2, 3]
    # Book bug fixed: the logged epsilon is the agent's, decayed once per episode (0.9994).
    assert ctx.metrics["epsilon"][1] == 1.0
    assert ctx.metrics["epsilon"][2] == pytest.approx(0.9994)
    assert ctx.metrics["epsilon"][3] == pytest.approx(0.9994**2)
    assert ctx.metrics["score_avg100"][2] == pytest.approx((ctx.metrics["score"][1] + ctx.metrics["score"][2]) / 2)
    assert all(1 <= steps <= TINY["max_steps"] for steps in ctx.metrics["steps"].values())
    assert all(value > 0 for value in ctx.metrics["env_steps_per_second"].values())
    # One point of the loss and Q curves per 20 training steps; training steps = env steps - 32.
    env_steps = result.summary["env_steps"]
    assert result.summary["training_steps"] == env_steps - 32
    assert sorted(ctx.metrics["loss"]) == list(range(20, env_steps - 32 + 1, 20))
    assert set(ctx.metrics["q_max"]) == set(ctx.metrics["loss"]) == set(ctx.metrics["q_mean"])
    assert ctx.checkpoints == [1, 2, 3]
    assert sorted(path.name for path in ctx.checkpoint_dir.iterdir()) == ["checkpoint.json", "training.npz"]
    assert set(result.metrics) == {
        "score_avg100", "env_steps_per_second", "test_score_mean", "test_score_std", "test_solved_fraction", "test_solved",
    }
    assert result.metrics["score_avg100"] == pytest.approx(np.mean(list(ctx.metrics["score"].values())))

    kinds = {path.name: kind for path, kind, _ in ctx.artifacts}
    assert kinds == {
        "episode-000002.mp4": "video", "final.mp4": "video", "episodes.csv": "report", "score.png": "plot",
        "loss.png": "plot", "q_values.png": "plot", "epsilon_steps.png": "plot",
    }
    for path, _, _ in ctx.artifacts:
        assert path.stat().st_size > 0
    with (ctx.artifacts_dir / "episodes.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["episode"]) for row in rows] == [1, 2, 3]
    assert [float(row["score"]) for row in rows] == pytest.approx([ctx.metrics["score"][n] for n in (1, 2, 3)], abs=1e-3)
    assert sorted(path.name for path in result.model_dir.iterdir()) == ["agent.json", "model.keras"]
    assert result.summary["parameters"] == 1476
    assert any(line.startswith("[info] episode: 3 score: ") and "epsilon 0.9988" in line for line in ctx.log_lines)


def crash_after(episodes: int):
    """A context whose worker 'dies' while reporting episode `episodes` + 1."""

    class CrashingContext(LocalRunContext):
        def log_metrics(self, step, **values):
            if "score" in values and step > episodes:
                raise RuntimeError("worker killed")
            super().log_metrics(step, **values)

    return CrashingContext


@pytest.mark.tf
def test_a_crashed_run_resumes_from_its_checkpoint_and_plays_the_same_episodes(pipeline, tmp_path):
    params = pipeline.resolve_params({**CARTPOLE, "episodes": 5, "seed": 3})
    whole = LocalRunContext(seed=3, work_dir=tmp_path / "whole", show_progress=False)
    pipeline.train(whole, None, params)

    crashed = crash_after(2)(seed=3, work_dir=tmp_path / "attempt", show_progress=False)
    with pytest.raises(RuntimeError, match="worker killed"):
        pipeline.train(crashed, None, params)
    crashed.close()
    assert crashed.checkpoints == [1, 2]
    shutil.rmtree(tmp_path / "attempt" / "artifacts")  # a new attempt starts with the checkpoint only
    resumed = LocalRunContext(seed=3, work_dir=tmp_path / "attempt", show_progress=False)
    result = pipeline.train(resumed, None, params)

    assert any(line.startswith("[info] resuming after episode 2 (epsilon 0.9988, memory ") for line in resumed.log_lines)
    assert sorted(resumed.metrics["score"]) == [3, 4, 5]
    assert result.summary["episodes_played"] == 5
    # Networks, optimizer, memory, epsilon and random generator restored: the same episodes as unbroken.
    assert [resumed.metrics["score"][n] for n in (3, 4, 5)] == [whole.metrics["score"][n] for n in (3, 4, 5)]
    assert [resumed.metrics["epsilon"][n] for n in (3, 4, 5)] == [whole.metrics["epsilon"][n] for n in (3, 4, 5)]
    with (resumed.artifacts_dir / "episodes.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 5  # the plots and the report cover the whole run


@pytest.mark.tf
def test_incremental_starts_from_the_parents_weights_with_epsilon_001_and_a_fresh_memory(pipeline, trained, tmp_path):
    _, parent = trained
    # No learning (the memory never fills past learning_starts): the network stays the parent's exactly.
    params = pipeline.resolve_params({**TINY, "mode": "incremental", "episodes": 2, "learning_starts": 10_000,
                                      "video_every_episodes": 0, "test_episodes": 1})
    ctx = LocalRunContext(seed=0, work_dir=tmp_path, show_progress=False)
    ctx.initial_model_dir = parent.model_dir
    result = pipeline.train(ctx, None, params)
    assert "[info] starting from the parent run's weights" in ctx.log_lines
    assert ctx.metrics["epsilon"][1] == 0.01
    assert "loss" not in ctx.metrics
    from worker.pipelines.lunar_lander.policy import read_network

    before, after = read_network(parent.model_dir).weights, read_network(result.model_dir).weights
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert result.summary["env_steps"] == sum(ctx.metrics["steps"].values())  # memory started empty


@pytest.mark.tf
def test_test_mode_plays_greedy_episodes_and_changes_no_weights(pipeline, trained, tmp_path):
    _, parent = trained
    digest = model_digest(parent.model_dir)
    params = pipeline.resolve_params({"mode": "test", "episodes": 3, "max_steps": TINY["max_steps"]})
    ctx = LocalRunContext(seed=0, work_dir=tmp_path, show_progress=False)
    ctx.initial_model_dir = parent.model_dir
    result = pipeline.train(ctx, None, params)
    assert result.model_dir is None  # an evaluation, not a new model
    assert model_digest(parent.model_dir) == digest
    assert sorted(ctx.metrics["score"]) == [1, 2, 3]
    assert set(ctx.metrics["epsilon"].values()) == {0.0}
    assert "loss" not in ctx.metrics and ctx.checkpoints == []
    scores = [ctx.metrics["score"][n] for n in (1, 2, 3)]
    assert result.metrics["test_score_mean"] == pytest.approx(np.mean(scores))
    assert result.metrics["test_solved_fraction"] == pytest.approx(np.mean(np.array(scores) >= 200))
    # The same starts as the training run's final test (2 episodes): the same network, the same scores.
    assert np.mean(scores[:2]) == pytest.approx(parent.metrics["test_score_mean"])
    assert [kind for _, kind, _ in ctx.artifacts] == ["video"]


def test_test_and_incremental_modes_need_a_parent(pipeline, tmp_path):
    ctx = LocalRunContext(seed=0, work_dir=tmp_path, show_progress=False)
    # Book bug fixed: it silently trained from scratch when no weights could be loaded.
    with pytest.raises(ValueError, match=r"mode: 'test' needs a parent run"):
        pipeline.train(ctx, None, pipeline.resolve_params({"mode": "test"}))
    with pytest.raises(ValueError, match=r"mode: 'incremental' needs a parent run"):
        pipeline.train(ctx, None, pipeline.resolve_params({"mode": "incremental"}))


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("NoSuchGame-v0", "env_id: unknown gymnasium environment 'NoSuchGame-v0'"),
        ("Pendulum-v1", "env_id: 'Pendulum-v1' has Box actions; a DQN needs Discrete ones"),
    ],
)
def test_unsuitable_environments_are_refused(pipeline, tmp_path, env_id, message):
    ctx = LocalRunContext(seed=0, work_dir=tmp_path, show_progress=False)
    with pytest.raises(ValueError) as raised:
        pipeline.train(ctx, None, pipeline.resolve_params({"env_id": env_id}))
    assert str(raised.value) == message


@pytest.mark.tf
def test_cancel_stops_between_episodes_and_keeps_the_network(pipeline, tmp_path):
    class CancelAfterTwo(LocalRunContext):
        def log_metrics(self, step, **values):
            super().log_metrics(step, **values)
            if "score" in values and step == 2:
                self.cancel()

    ctx = CancelAfterTwo(seed=0, work_dir=tmp_path, show_progress=False)
    result = pipeline.train(ctx, None, pipeline.resolve_params({**CARTPOLE, "episodes": 50}))
    assert result.metrics == {}
    assert result.summary["stopped"] and result.summary["episodes_played"] == 2
    assert (result.model_dir / "model.keras").exists()


# Prediction ------------------------------------------------------------------------------------


@pytest.mark.tf
def test_predict_answers_the_greedy_action_and_its_q_values(pipeline, trained):
    _, result = trained
    predictor = pipeline.load(result.model_dir)
    import keras

    model = keras.models.load_model(result.model_dir / "model.keras")
    state = [0.1, 1.2, -0.3, -0.4, 0.05, 0.0, 0.0, 1.0]
    expected = model(np.array([state], dtype=np.float32)).numpy()[0]
    output = predictor.predict(PredictInput(data={"state": state}))
    assert output["q_values"] == pytest.approx(expected.tolist(), abs=1e-5)
    assert output["action"] == int(np.argmax(expected))
    assert predictor.predict(PredictInput(data={"state": str(state)})) == output  # a form field


@pytest.mark.tf
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"state": [0.0, 1.0, 2.0]}, "state: expected 8 numbers, got 3"),
        ({"state": "eight floats"}, "state: not valid JSON"),
        ({"state": [0.0] * 7 + ["x"]}, "state: expected a list of 8 numbers"),
        ({"state": [float("nan")] * 8}, "state: numbers must be finite"),
        ({}, 'state: required (or "rollout": {"seed": int})'),
        ({"rollout": {"seed": -1}}, "rollout.seed: expected an integer from 0 to 2**31 - 1"),
        ({"rollout": 5}, 'rollout: expected an object like {"seed": 1}'),
    ],
)
def test_bad_predict_inputs_are_refused_by_field(pipeline, trained, data, message):
    _, result = trained
    with pytest.raises(ValueError) as raised:
        pipeline.load(result.model_dir).predict(PredictInput(data=data))
    assert str(raised.value) == message


@pytest.mark.tf
def test_a_rollout_plays_a_greedy_episode_into_an_mp4(pipeline, trained):
    _, result = trained
    predictor = pipeline.load(result.model_dir)
    first = predictor.predict(PredictInput(data={"rollout": {"seed": 7}}))
    assert set(first) == {"seed", "score", "steps", "files"}
    assert first["seed"] == 7 and 1 <= first["steps"] <= TINY["max_steps"]
    video = Path(first["files"]["video"])
    assert video.read_bytes()[4:8] == b"ftyp"
    again = predictor.predict(PredictInput(data={"rollout": {"seed": 7}}))
    assert (again["score"], again["steps"]) == (first["score"], first["steps"])  # greedy and seeded
