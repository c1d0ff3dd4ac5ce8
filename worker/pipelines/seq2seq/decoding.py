"""Decoding a trained Seq2SeqModel: greedy, beam search and temperature sampling.

The model is called through TensorFlow functions traced once for the padded shapes (any batch size,
the fixed source length), never through `model.predict`:
- `greedy` runs the whole greedy loop in one compiled function (the fastest way to a whole reply);
- `batch` opens a DecodingBatch: a compiled one-step decoder in a Python loop, one token per reply a
  step, so that replies stream as they are decoded (greedy, or sampled with a temperature); new
  sources join it and finished replies leave it between steps. `steps` decodes one set of sources
  that way;
- `beam_search` keeps the `width` best partial replies per input, by total log-probability
  normalised by length, on the same one-step decoder.

Decoding never emits `_PAD`, `_GO` or `_UNK`: a reply is made of words, and stops at `_EOS` or after
`max_output_length` tokens.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator

import numpy as np
import tensorflow as tf

from worker.pipelines.seq2seq.model import Seq2SeqModel
from worker.pipelines.seq2seq.text import EOS_ID, GO_ID, PAD_ID, UNK_ID

NEVER_EMITTED = (PAD_ID, GO_ID, UNK_ID)


class Seq2SeqDecoder:
    """Compiled decoding functions of one model; build once (it traces and warms up), call often."""

    def __init__(self, model: Seq2SeqModel, *, source_length: int, max_output_length: int):
        self.model = model
        self.source_length = source_length
        self.max_output_length = max_output_length  # tokens of a reply, EOS included
        self._state_shapes = [len(layer_states) for layer_states in self._initial_states_structure()]
        bias = np.zeros(model.target_vocabulary_size, dtype=np.float32)
        bias[list(NEVER_EMITTED)] = -np.inf
        self._bias_numpy = bias
        self._bias = tf.constant(bias)
        units = model.units
        source_spec = tf.TensorSpec([None, source_length], tf.int32)
        state_specs = [tf.TensorSpec([None, units], tf.float32)] * sum(self._state_shapes)
        self._encode = tf.function(self._encode_flat, input_signature=[source_spec], reduce_retracing=False)
        # Sources are left-padded, and most are much shorter than source_length: a DecodingBatch encodes
        # only the last `length` columns, for the shortest of these lengths that holds every token (a
        # masked step leaves the state as it was, so the result is the same; each length is traced once).
        self._encode_lengths = sorted({max(1, -(-source_length // 4)), max(1, -(-source_length // 2)), source_length})
        self._encoders = {
            length: tf.function(self._encode_flat).get_concrete_function(tf.TensorSpec([None, length], tf.int32))
            for length in self._encode_lengths
        }
        self._step = tf.function(
            self._step_flat,
            input_signature=[
                tf.TensorSpec([None], tf.int32),
                state_specs,
                tf.TensorSpec([None, source_length, units], tf.float32),
                tf.TensorSpec([None, source_length], tf.bool),
            ],
        )
        self._greedy = tf.function(self._greedy_loop, input_signature=[source_spec])
        # The first calls trace and set kernels up: now, not on somebody's first message. The concrete
        # step function spares each step the polymorphic function's argument binding (about a third of
        # a step at small batches).
        warm = np.zeros((1, source_length), dtype=np.int32)
        self.greedy(warm)
        self._step_concrete = self._step.get_concrete_function()
        for length in self._encode_lengths:
            self._encoders[length](tf.constant(warm[:, -length:]))
        next(self.steps(warm), None)

    def encode_tokens(self, source: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(encoder outputs [n, source_length, units], mask, flat final states) of left-padded
        sources, computed over the shortest traced length that holds every source's tokens."""
        tokens = int((source != PAD_ID).sum(axis=1).max(initial=0))
        length = next(length for length in self._encode_lengths if length >= tokens)
        outputs, mask, states = self._encoders[length](tf.constant(source[:, -length:], tf.int32))
        padding = self.source_length - length
        outputs = np.pad(outputs.numpy(), ((0, 0), (padding, 0), (0, 0)))  # positions the mask hides
        mask = np.pad(mask.numpy(), ((0, 0), (padding, 0)), constant_values=False)
        return outputs, mask, [state.numpy() for state in states]

    def _initial_states_structure(self):
        return [[None] * self.model.states_per_layer for _ in range(self.model.layer_count)]

    def _pack(self, flat):
        states, index = [], 0
        for size in self._state_shapes:
            states.append(list(flat[index : index + size]))
            index += size
        return states

    @staticmethod
    def _flatten(states):
        return [tensor for layer_states in states for tensor in layer_states]

    def _encode_flat(self, source):
        outputs, mask, states = self.model.encode(source)
        return outputs, mask, self._flatten(states)

    def _step_flat(self, tokens, flat_states, encoder_outputs, mask):
        logits, states = self.model.decode(tokens[:, tf.newaxis], self._pack(flat_states), encoder_outputs, mask)
        return logits[:, 0, :], self._flatten(states)

    def _greedy_loop(self, source):
        encoder_outputs, mask, flat_states = self._encode_flat(source)
        tokens = tf.fill([tf.shape(source)[0]], tf.constant(GO_ID, tf.int32))
        outputs = tf.TensorArray(tf.int32, size=self.max_output_length)
        for step in tf.range(self.max_output_length):
            logits, flat_states = self._step_flat(tokens, flat_states, encoder_outputs, mask)
            tokens = tf.argmax(logits + self._bias, axis=-1, output_type=tf.int32)
            outputs = outputs.write(step, tokens)
        return tf.transpose(outputs.stack())

    # Decoding -------------------------------------------------------------------------------------

    def greedy(self, source: np.ndarray) -> np.ndarray:
        """int32 [batch, max_output_length] of token ids (cut them at EOS with text.ids_to_tokens)."""
        return self._greedy(tf.constant(source, tf.int32)).numpy()

    def batch(self, *, seed: int | None = None) -> DecodingBatch:
        """An empty DecodingBatch; `seed` seeds its sampling."""
        return DecodingBatch(self, seed=seed)

    def steps(
        self, source: np.ndarray, *, temperature: float = 0.0, seed: int | None = None
    ) -> Iterator[np.ndarray]:
        """Each step's next token per input ([batch] int32), until every input has emitted EOS or the
        length limit; inputs already finished get PAD. Temperature 0 is greedy; above 0, tokens are
        drawn from softmax(logits / temperature)."""
        batch = self.batch(seed=seed)
        batch.add(range(source.shape[0]), source, temperature=temperature)
        while batch:
            tokens = np.full(source.shape[0], PAD_ID, dtype=np.int32)
            emitted, _ = batch.step()
            for row, token in emitted:
                tokens[row] = token
            yield tokens

    def beam_search(self, source: np.ndarray, *, width: int = 5) -> list[list[int]]:
        """The best token ids per input (EOS excluded) by log-probability divided by length."""
        if width < 1:
            raise ValueError(f"beam_width: must be 1 or more, got {width}")
        return [self._beam_one(source[index : index + 1], width) for index in range(source.shape[0])]

    def _beam_one(self, source: np.ndarray, width: int) -> list[int]:
        encoder_outputs, mask, flat_states = self._encode(tf.constant(source, tf.int32))
        encoder_outputs = tf.repeat(encoder_outputs, width, axis=0)
        mask = tf.repeat(mask, width, axis=0)
        sequences: list[list[int]] = [[]]
        scores = np.zeros(1)
        tokens = np.array([GO_ID], dtype=np.int32)
        finished: list[tuple[float, list[int]]] = []
        for _ in range(self.max_output_length):
            alive = len(sequences)
            logits, flat_states = self._step(tf.constant(tokens), flat_states, encoder_outputs[:alive], mask[:alive])
            log_probabilities = _log_softmax(logits.numpy() + self._bias_numpy)
            totals = (scores[:, np.newaxis] + log_probabilities).ravel()
            best = np.argsort(-totals, kind="stable")[: 2 * width]
            vocabulary = log_probabilities.shape[1]
            keep_rows, keep_tokens, keep_scores = [], [], []
            for flat_index in best:
                row, token = divmod(int(flat_index), vocabulary)
                if token == EOS_ID:
                    finished.append((totals[flat_index] / (len(sequences[row]) + 1), sequences[row]))
                elif len(keep_rows) < width:
                    keep_rows.append(row)
                    keep_tokens.append(token)
                    keep_scores.append(totals[flat_index])
            if len(finished) >= width or not keep_rows:
                break
            sequences = [sequences[row] + [token] for row, token in zip(keep_rows, keep_tokens)]
            scores = np.array(keep_scores)
            tokens = np.array(keep_tokens, dtype=np.int32)
            flat_states = [tf.gather(state, keep_rows) for state in flat_states]
        else:
            finished.extend((score / len(sequence), sequence) for score, sequence in zip(scores, sequences))
        return max(finished, key=lambda item: item[0])[1] if finished else []


class DecodingBatch:
    """Replies decoded together, one token each a step, that new sources join and finished replies
    leave between steps: iteration-level batching, as servers of language models do. A reply waits
    neither for the replies that started before it nor for the longest one beside it, and each step
    computes only the replies still going.

    Each reply is known by a tag of the caller's. The batch's state is kept in NumPy arrays, so that
    joining and leaving are array copies rather than TensorFlow operations.
    """

    def __init__(self, decoder: Seq2SeqDecoder, *, seed: int | None = None):
        self.decoder = decoder
        self._generator = np.random.default_rng(seed)
        self._tags: list[Hashable] = []
        self._tokens = np.empty(0, dtype=np.int32)  # each reply's latest token, the next step's input
        self._lengths = np.empty(0, dtype=np.int32)  # tokens emitted
        self._temperatures = np.empty(0, dtype=np.float32)
        self._encoder_outputs: np.ndarray | None = None  # [replies, source_length, units]
        self._mask: np.ndarray | None = None  # [replies, source_length], False on padding
        self._states: list[np.ndarray] | None = None  # per layer and state, [replies, units]
        self._joining: list[tuple[list[Hashable], np.ndarray, float]] = []  # encoded at the next step

    def __len__(self) -> int:
        return len(self._tags) + sum(len(tags) for tags, _, _ in self._joining)

    def add(self, tags: Iterable[Hashable], source: np.ndarray, *, temperature: float = 0.0) -> None:
        """Sources ([n, source_length] ids) to decode from the next step on, one tag each; temperature
        0 is greedy, above 0 tokens are drawn from softmax(logits / temperature)."""
        if not temperature >= 0:
            raise ValueError(f"temperature: must be 0 (greedy) or more, got {temperature}")
        tags = list(tags)
        if len(tags) != source.shape[0]:
            raise ValueError(f"{len(tags)} tag(s) for {source.shape[0]} source(s)")
        if tags:
            self._joining.append((tags, source, temperature))

    def step(self) -> tuple[list[tuple[Hashable, int]], list[Hashable]]:
        """One token for every reply: ([(tag, token id), ...], the tags of the replies this token
        ended, with EOS or at the length limit; they leave the batch)."""
        self._join()
        if not self._tags:
            return [], []
        decoder = self.decoder
        logits, states = decoder._step_concrete(
            tf.constant(self._tokens), [tf.constant(state) for state in self._states],
            tf.constant(self._encoder_outputs), tf.constant(self._mask),
        )  # fmt: skip
        scores = logits.numpy() + decoder._bias_numpy
        tokens = scores.argmax(axis=-1).astype(np.int32)
        sampled = self._temperatures > 0
        if sampled.any():
            tokens[sampled] = _sample(scores[sampled] / self._temperatures[sampled, np.newaxis], self._generator)
        self._tokens = tokens
        self._lengths += 1
        self._states = [state.numpy() for state in states]
        emitted = list(zip(self._tags, tokens.tolist()))
        ended = (tokens == EOS_ID) | (self._lengths >= decoder.max_output_length)
        if not ended.any():
            return emitted, []
        finished = [tag for tag, done in zip(self._tags, ended) if done]
        going = ~ended
        self._tags = [tag for tag, keep in zip(self._tags, going) if keep]
        self._tokens, self._lengths, self._temperatures = self._tokens[going], self._lengths[going], self._temperatures[going]
        self._encoder_outputs, self._mask = self._encoder_outputs[going], self._mask[going]
        self._states = [state[going] for state in self._states]
        return emitted, finished

    def _join(self) -> None:
        """Encode the sources added since the last step, in one call, and append them to the batch."""
        if not self._joining:
            return
        tags = [tag for joining_tags, _, _ in self._joining for tag in joining_tags]
        source = np.concatenate([joining_source for _, joining_source, _ in self._joining])
        temperatures = [np.full(len(joining_tags), value, np.float32) for joining_tags, _, value in self._joining]
        self._joining = []
        encoder_outputs, mask, states = self.decoder.encode_tokens(source)
        self._tags = self._tags + tags
        self._tokens = np.concatenate([self._tokens, np.full(len(tags), GO_ID, dtype=np.int32)])
        self._lengths = np.concatenate([self._lengths, np.zeros(len(tags), dtype=np.int32)])
        self._temperatures = np.concatenate([self._temperatures, *temperatures])
        self._encoder_outputs = _append(self._encoder_outputs, encoder_outputs)
        self._mask = _append(self._mask, mask)
        self._states = [_append(old, new) for old, new in zip(self._states or [None] * len(states), states)]


def _append(rows: np.ndarray | None, more: np.ndarray) -> np.ndarray:
    return more if rows is None else np.concatenate([rows, more])


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _sample(scores: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    probabilities = np.exp(_log_softmax(scores))
    cumulative = probabilities.cumsum(axis=-1)
    draws = generator.random((scores.shape[0], 1)) * cumulative[:, -1:]
    return np.minimum((cumulative < draws).sum(axis=-1), scores.shape[1] - 1).astype(np.int32)
