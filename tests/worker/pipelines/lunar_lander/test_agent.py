"""The book's Brain, Memory and replay(): shapes, exact targets and losses, saving and restoring."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def make_agent(**options):
    from worker.pipelines.lunar_lander.agent import DQNAgent

    settings = {"observation_size": 8, "action_count": 4, "hidden_layers": [32, 32]} | options
    return DQNAgent(**settings)


def test_the_books_brain_has_1476_parameters_and_numpy_acts_like_keras():
    from worker.pipelines.lunar_lander.model import build_q_network, numpy_forward

    for activation in ("relu", "leaky_relu"):
        model = build_q_network(8, 4, [32, 32], activation)
        assert model.count_params() == 1476  # 8*32+32 + 32*32+32 + 32*4+4
        states = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
        np.testing.assert_allclose(numpy_forward(model.get_weights(), states, activation), model(states).numpy(), atol=1e-5)


def test_replay_memory_forgets_the_oldest_like_a_deque_and_survives_a_checkpoint(tmp_path):
    from worker.pipelines.lunar_lander.agent import ReplayMemory

    memory = ReplayMemory(3, 2)
    for step in range(5):
        memory.add([step, step], step % 2, float(step), [step + 1, step + 1], step == 4)
    assert len(memory) == 3
    assert sorted(memory.rewards.tolist()) == [2.0, 3.0, 4.0]  # 0 and 1 were pushed out
    assert memory.dones.tolist() == [0.0, 1.0, 0.0] and memory.position == 2
    states, actions, rewards, next_states, dones = memory.sample(3, np.random.default_rng(0))
    assert sorted(rewards.tolist()) == [2.0, 3.0, 4.0]  # without repeats, as random.sample
    np.testing.assert_array_equal(next_states - states, np.ones((3, 2)))

    np.savez(tmp_path / "checkpoint.npz", **memory.state_arrays())
    restored = ReplayMemory(3, 2)
    with np.load(tmp_path / "checkpoint.npz") as saved:
        restored.restore(saved)
    assert (len(restored), restored.position) == (3, 2)
    np.testing.assert_array_equal(restored.states, memory.states)
    np.testing.assert_array_equal(restored.actions, memory.actions)


def numpy_loss(agent, batch, gamma, *, double_dqn=True, huber=False):
    """The book's replay() in numpy: targets, then the MSE over all batch x action entries."""
    from worker.pipelines.lunar_lander.model import numpy_forward

    states, actions, rewards, next_states, dones = batch
    online = [w.numpy() for w in agent.online.weights]
    target = [w.numpy() for w in agent.target.weights]
    next_target = numpy_forward(target, next_states)
    best = numpy_forward(online, next_states).argmax(axis=1) if double_dqn else next_target.argmax(axis=1)
    y = rewards + gamma * (1 - dones) * next_target[np.arange(len(best)), best]
    q = numpy_forward(online, states)
    expected = q.copy()
    expected[np.arange(len(actions)), actions] = y  # book: expected_reward[range(batch_size), a] = r
    errors = expected - q
    if huber:
        absolute = np.abs(errors)
        return float(np.mean(np.where(absolute <= 1, 0.5 * errors**2, absolute - 0.5)))
    return float(np.mean(errors**2))


@pytest.mark.parametrize(("double_dqn", "loss"), [(True, "mse"), (False, "mse"), (True, "huber")])
def test_a_training_step_fits_the_books_targets(double_dqn, loss):
    agent = make_agent(double_dqn=double_dqn, loss=loss, gamma=0.9)
    rng = np.random.default_rng(1)
    # Make the online and target networks differ, so the double-DQN target is not the plain one.
    agent.online.set_weights([w + 0.1 * rng.normal(size=w.shape).astype(np.float32) for w in agent.online.get_weights()])
    batch = (
        rng.normal(size=(16, 8)).astype(np.float32),
        rng.integers(0, 4, 16).astype(np.int32),
        (10 * rng.normal(size=16)).astype(np.float32),
        rng.normal(size=(16, 8)).astype(np.float32),
        (rng.random(16) < 0.3).astype(np.float32),
    )
    expected = numpy_loss(agent, batch, 0.9, double_dqn=double_dqn, huber=loss == "huber")
    before = [w.numpy().copy() for w in agent.online.weights]
    agent.learn(batch)
    statistics = agent.take_step_statistics()
    assert statistics["loss"] == pytest.approx(expected, rel=1e-4)
    assert agent.take_step_statistics() is None  # reset after reading
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, agent.online.weights))
    # The acting copy follows the update.
    state = batch[0][:1]
    np.testing.assert_allclose(agent.q_values(state), agent.online(state).numpy(), atol=1e-5)


def test_epsilon_greedy_acts_randomly_at_1_and_greedily_at_0():
    agent = make_agent()
    state = np.linspace(-1, 1, 8).astype(np.float32)
    greedy = int(np.argmax(agent.online(state[np.newaxis]).numpy()))
    rng = np.random.default_rng(0)
    assert {agent.act(state, 0.0, rng) for _ in range(20)} == {greedy}
    assert {agent.act(state, 1.0, rng) for _ in range(200)} == {0, 1, 2, 3}


def test_networks_and_adam_state_survive_a_checkpoint(tmp_path):
    agent = make_agent()
    rng = np.random.default_rng(2)
    batch = (rng.normal(size=(8, 8)).astype(np.float32), rng.integers(0, 4, 8).astype(np.int32),
             rng.normal(size=8).astype(np.float32), rng.normal(size=(8, 8)).astype(np.float32), np.zeros(8, np.float32))
    for _ in range(3):
        agent.learn(batch)
    np.savez(tmp_path / "checkpoint.npz", **agent.state_arrays())
    restored = make_agent()
    with np.load(tmp_path / "checkpoint.npz") as saved:
        restored.restore(saved)
    assert int(restored.optimizer.iterations.numpy()) == 3
    for a, b in zip(agent.optimizer.variables + agent.online.weights + agent.target.weights,
                    restored.optimizer.variables + restored.online.weights + restored.target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    agent.update_target()
    for online, target in zip(agent.online.weights, agent.target.weights):
        np.testing.assert_array_equal(online.numpy(), target.numpy())


def test_a_seeded_brain_does_not_depend_on_pythons_global_random_generator():
    import random

    from worker.pipelines.lunar_lander.model import build_q_network

    first = build_q_network(8, 4, [32, 32], seed=5).get_weights()
    random.random()  # what a worker's reporting thread may do meanwhile
    second = build_q_network(8, 4, [32, 32], seed=5).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], build_q_network(8, 4, [32, 32], seed=6).get_weights()[0])
