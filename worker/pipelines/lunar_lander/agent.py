"""The chapter's `Memory` and `Agent`: experience replay, epsilon-greedy acting and the DQN update.

The update is the book's `replay()`: for a random batch of remembered transitions,

    y = r                                                   if the episode ended there
    y = r + gamma * Q_target(s', argmax_a Q_online(s', a))  otherwise (a Double-DQN target)

and the online network is fitted towards y on the action taken, the other actions' targets being
their current predictions (zero error), so the loss is averaged over all batch x action entries as the
book's MSE is. Unlike the book, which ran three `predict` calls and a `fit` through a Session for each
step, one XLA-compiled function does it all, and acting uses a numpy copy of the weights: a training
step costs about a millisecond, acting about 10 us.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from worker.pipelines.lunar_lander.model import build_q_network, numpy_forward



class ReplayMemory:
    """The book's `Memory` (a deque of maxlen transitions) as preallocated numpy arrays.

    Book bug fixed: `np.array(random.sample(deque_of_tuples, 32))` fails on numpy >= 1.24 (an
    inhomogeneous array); arrays indexed by sampled positions do not, and cost no Python per row.
    """

    def __init__(self, capacity: int, observation_size: int):
        self.capacity = capacity
        self.states = np.zeros((capacity, observation_size), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.next_states = np.zeros((capacity, observation_size), dtype=np.float32)
        self.dones = np.zeros(capacity, dtype=np.float32)
        self.size = 0
        self.position = 0  # the next slot to write; the oldest transition once full (a deque's popleft)

    def __len__(self) -> int:
        return self.size

    def add(self, state, action: int, reward: float, next_state, done: bool) -> None:
        index = self.position
        self.states[index] = state
        self.actions[index] = action
        self.rewards[index] = reward
        self.next_states[index] = next_state
        self.dones[index] = done
        self.position = (index + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """A batch without repeats, as the book's random.sample draws it."""
        index = rng.choice(self.size, size=batch_size, replace=False)
        return self.states[index], self.actions[index], self.rewards[index], self.next_states[index], self.dones[index]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The filled part only, for a checkpoint: a young run's checkpoint is small."""
        used = slice(0, self.size)
        return {
            "memory_states": self.states[used], "memory_actions": self.actions[used],
            "memory_rewards": self.rewards[used], "memory_next_states": self.next_states[used],
            "memory_dones": self.dones[used], "memory_position": np.array(self.position),
        }

    def restore(self, saved) -> None:
        """From `state_arrays` (a loaded npz)."""
        size = min(len(saved["memory_actions"]), self.capacity)
        self.states[:size] = saved["memory_states"][:size]
        self.actions[:size] = saved["memory_actions"][:size]
        self.rewards[:size] = saved["memory_rewards"][:size]
        self.next_states[:size] = saved["memory_next_states"][:size]
        self.dones[:size] = saved["memory_dones"][:size]
        self.size = size
        self.position = int(saved["memory_position"]) % self.capacity


class DQNAgent:
    """Online and target Brains, Adam, and the compiled update. Epsilon lives with the training loop."""

    def __init__(
        self,
        *,
        observation_size: int,
        action_count: int,
        hidden_layers: list[int],
        activation: str = "relu",
        learning_rate: float = 1e-4,
        gamma: float = 0.99,
        loss: str = "mse",
        double_dqn: bool = True,
        seed: int | None = None,
    ):
        import keras

        self.observation_size = observation_size
        self.action_count = action_count
        self.activation = activation
        self.online = build_q_network(observation_size, action_count, hidden_layers, activation, seed=seed)
        self.target = build_q_network(observation_size, action_count, hidden_layers, activation)  # copied below
        self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        self.optimizer.build(self.online.trainable_variables)
        # Sums of (loss, max Q, mean Q) over the training steps since `take_step_statistics`.
        self._statistics = tf.Variable(tf.zeros(4), trainable=False)
        self._gamma = float(gamma)
        self._loss = loss
        self._double_dqn = double_dqn
        self._policy_weights: list[np.ndarray] | None = None  # numpy copy of the online weights, for acting
        self._new_weights = None  # the flat weights the last training step returned
        self._weight_shapes = [tuple(variable.shape) for variable in self.online.weights]
        ends = np.cumsum([int(np.prod(shape)) for shape in self._weight_shapes])
        self._weight_slices = list(zip([0, *ends[:-1]], ends))
        self._train_step = self._compile_train_step()
        self._copy_to_target = tf.function(self._copy_weights)
        self.update_target()

    # Acting ----------------------------------------------------------------------------------------

    def q_values(self, states: np.ndarray) -> np.ndarray:
        if self._policy_weights is None:  # the weights changed since the last greedy action
            if self._new_weights is None:
                self._policy_weights = [variable.numpy() for variable in self.online.weights]
            else:
                flat = self._new_weights.numpy()
                slices = zip(self._weight_slices, self._weight_shapes)
                self._policy_weights = [flat[start:end].reshape(shape) for (start, end), shape in slices]
        return numpy_forward(self._policy_weights, states, self.activation)

    def act(self, state: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
        """Epsilon-greedy, as the book's `act`: random with probability epsilon, else argmax Q."""
        if rng.random() <= epsilon:
            return int(rng.integers(self.action_count))
        return int(np.argmax(self.q_values(state[np.newaxis])[0]))

    # Learning --------------------------------------------------------------------------------------

    def learn(self, batch: tuple[np.ndarray, ...]) -> None:
        """One gradient step on a replay batch (the book's `replay()`)."""
        self._new_weights = self._train_step(*batch)
        self._policy_weights = None

    def update_target(self) -> None:
        """The book's `target_model_update`: copy the online weights into the target network."""
        self._copy_to_target()

    def take_step_statistics(self) -> dict[str, float] | None:
        """Mean loss, max Q and mean Q over the training steps since the last call (None if none)."""
        loss_sum, q_max_sum, q_mean_sum, count = self._statistics.numpy()
        if count == 0:
            return None
        self._statistics.assign(tf.zeros(4))
        return {"loss": loss_sum / count, "q_max": q_max_sum / count, "q_mean": q_mean_sum / count}

    def _copy_weights(self) -> None:
        for target, online in zip(self.target.weights, self.online.weights):
            target.assign(online)

    def _compile_train_step(self):
        online, target, optimizer = self.online, self.target, self.optimizer
        gamma, action_count = self._gamma, self.action_count
        double_dqn, huber = self._double_dqn, self._loss == "huber"

        @tf.function(jit_compile=True, reduce_retracing=True)
        def train_step(states, actions, rewards, next_states, dones):
            next_target = target(next_states, training=False)
            if double_dqn:  # the book's target: the online network picks, the target network values
                best = tf.argmax(online(next_states, training=False), axis=1, output_type=tf.int32)
            else:
                best = tf.argmax(next_target, axis=1, output_type=tf.int32)
            next_value = tf.gather(next_target, best, axis=1, batch_dims=1)
            targets = tf.stop_gradient(rewards + gamma * (1.0 - dones) * next_value)
            taken = tf.one_hot(actions, action_count)
            with tf.GradientTape() as tape:
                q = online(states, training=True)
                # Only the taken action's entry has an error; the mean runs over all entries (book's MSE).
                errors = taken * (targets[:, tf.newaxis] - q)
                if huber:
                    absolute = tf.abs(errors)
                    quadratic = tf.minimum(absolute, 1.0)
                    loss = tf.reduce_mean(0.5 * quadratic**2 + (absolute - quadratic))
                else:
                    loss = tf.reduce_mean(tf.square(errors))
            gradients = tape.gradient(loss, online.trainable_variables)
            optimizer.apply_gradients(zip(gradients, online.trainable_variables))
            self._statistics.assign_add(tf.stack([loss, tf.reduce_max(q), tf.reduce_mean(q), 1.0]))
            # The new weights, flat: the acting copy costs one tensor read instead of one per variable.
            return tf.concat([tf.reshape(variable, [-1]) for variable in online.weights], axis=0)

        # Calling the traced graph directly skips tf.function's argument binding (~100 us a call).
        vector = tf.TensorSpec([None, self.observation_size], tf.float32)
        scalar = tf.TensorSpec([None], tf.float32)
        return train_step.get_concrete_function(vector, tf.TensorSpec([None], tf.int32), scalar, vector, scalar)

    # Saving ----------------------------------------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Both networks and Adam's state (its moments and step count), for an exact resume."""
        return {
            f"{name}_{index}": variable.numpy()
            for name, group in self._variable_groups().items()
            for index, variable in enumerate(group)
        }

    def restore(self, saved) -> None:
        """From `state_arrays` (a loaded npz)."""
        for name, group in self._variable_groups().items():
            for index, variable in enumerate(group):
                variable.assign(saved[f"{name}_{index}"])
        self._policy_weights = self._new_weights = None

    def _variable_groups(self) -> dict[str, list]:
        return {"online": self.online.weights, "target": self.target.weights, "optimizer": self.optimizer.variables}

    def set_online_weights(self, weights: list[np.ndarray]) -> None:
        """Start from given weights (a parent run's); the target network gets them too."""
        self.online.set_weights(weights)
        self.update_target()
        self._policy_weights = self._new_weights = None

    def online_weights(self) -> list[np.ndarray]:
        return [variable.numpy() for variable in self.online.weights]

