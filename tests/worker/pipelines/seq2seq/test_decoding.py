"""The Keras encoder-decoder and its compiled decoders: shapes, agreement between the decoding
methods, and a tiny task (reversing words) learnt well enough that every method decodes it exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytestmark = pytest.mark.tf

WORDS = ["red", "green", "blue", "cat", "dog", "sun"]


@pytest.fixture(scope="module")
def reverser():
    """A 1 x 32 GRU taught to answer three words with the same words reversed (120 pairs)."""
    import keras

    from worker.pipelines.seq2seq import text
    from worker.pipelines.seq2seq.decoding import Seq2SeqDecoder
    from worker.pipelines.seq2seq.model import Perplexity, book_optimizer, build_model, masked_cross_entropy

    questions = [list(words) for words in itertools.permutations(WORDS, 3)]
    answers = [question[::-1] for question in questions]
    vocabulary = text.Vocabulary.build(questions, size=20)
    source = text.source_array(questions, vocabulary, 4)
    decoder_inputs, decoder_targets = text.target_arrays(answers, vocabulary, 4)
    keras.utils.set_random_seed(3)
    model = build_model(len(vocabulary), len(vocabulary), source_length=4, target_length=5, units=32, layers=1)
    model.compile(
        optimizer=book_optimizer(name="adam", learning_rate=0.02, decay_rate=0.99, decay_steps=100, clip_norm=5.0),
        loss=masked_cross_entropy, metrics=[Perplexity()],
    )
    history = model.fit((source, decoder_inputs), decoder_targets, batch_size=32, epochs=60, verbose=0)
    decoder = Seq2SeqDecoder(model, source_length=4, max_output_length=5)
    return vocabulary, questions, source, decoder, history.history


def test_perplexity_is_exp_of_the_masked_loss(reverser):
    *_, history = reverser
    assert history["perplexity"][-1] == pytest.approx(np.exp(history["loss"][-1]), rel=1e-4)
    assert history["perplexity"][-1] < 1.5


def test_every_decoding_method_reverses_the_words(reverser):
    from worker.pipelines.seq2seq import text

    vocabulary, questions, source, decoder, _ = reverser
    expected = [question[::-1] for question in questions]
    greedy = [text.ids_to_tokens(ids, vocabulary) for ids in decoder.greedy(source)]
    assert greedy == expected
    stepped = np.stack(list(decoder.steps(source)), axis=1)
    assert [text.ids_to_tokens(ids, vocabulary) for ids in stepped] == expected
    beams = decoder.beam_search(source[:10], width=3)
    assert [[vocabulary.token(token) for token in ids] for ids in beams] == expected[:10]
    # A low temperature is nearly greedy.
    sampled = np.stack(list(decoder.steps(source, temperature=0.05, seed=1)), axis=1)
    assert [text.ids_to_tokens(ids, vocabulary) for ids in sampled] == expected


def test_steps_stop_at_eos_and_pad_finished_replies(reverser):
    from worker.pipelines.seq2seq.text import EOS_ID, PAD_ID

    _, _, source, decoder, _ = reverser
    steps = list(decoder.steps(source[:4]))
    assert len(steps) == 4  # three words and EOS, for every input
    assert steps[-1].tolist() == [EOS_ID] * 4
    assert all(step.dtype == np.int32 and step.shape == (4,) for step in steps)
    assert PAD_ID not in np.concatenate(steps[:-1])


def test_a_decoding_batch_takes_sources_between_steps_and_lets_finished_ones_go(reverser):
    from worker.pipelines.seq2seq.text import EOS_ID

    _, _, source, decoder, _ = reverser
    batch = decoder.batch()
    batch.add(["a", "b"], source[:2])
    tokens: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    finished_at, sizes = {}, []
    while batch:
        if len(sizes) == 2:
            batch.add(["c"], source[2:3])
        sizes.append(len(batch))
        emitted, ended = batch.step()
        for tag, token in emitted:
            tokens[tag].append(token)
        finished_at.update(dict.fromkeys(ended, len(sizes)))
    # Three words and EOS each, "c" from the third step on, as each decodes alone.
    assert finished_at == {"a": 4, "b": 4, "c": 6}
    assert sizes == [2, 2, 3, 3, 1, 1]
    greedy = decoder.greedy(source[:3])
    assert [tokens[tag] for tag in "abc"] == [greedy[row][:4].tolist() for row in range(3)]
    assert all(tokens[tag][-1] == EOS_ID for tag in "abc")
    with pytest.raises(ValueError, match="1 tag\\(s\\) for 2 source"):
        batch.add(["x"], source[:2])


def test_short_sources_are_encoded_over_their_tokens_only_with_the_same_result(reverser):
    from worker.pipelines.seq2seq import text

    vocabulary, _, _, decoder, _ = reverser
    source = text.source_array([["red"], ["cat", "dog"], ["sun", "red", "blue"]], vocabulary, 4)
    for rows in (source[:1], source[:2], source):  # encoded over 1, 2 and all 4 columns
        outputs, mask, states = decoder.encode_tokens(rows)
        full_outputs, full_mask, full_states = decoder._encode(rows)
        np.testing.assert_array_equal(mask, full_mask.numpy())
        np.testing.assert_allclose(outputs[mask], full_outputs.numpy()[mask], atol=1e-6)
        for state, full_state in zip(states, full_states):
            np.testing.assert_allclose(state, full_state.numpy(), atol=1e-6)
    assert [length for length in decoder._encode_lengths] == [1, 2, 4]


def test_untrained_model_never_emits_special_tokens_and_sampling_is_seeded():
    from worker.pipelines.seq2seq.decoding import Seq2SeqDecoder
    from worker.pipelines.seq2seq.model import build_model
    from worker.pipelines.seq2seq.text import GO_ID, UNK_ID

    for cell in ("gru", "lstm"):
        model = build_model(12, 9, source_length=3, target_length=5, units=8, layers=2, cell=cell)
        assert model((np.zeros((2, 3), np.int32), np.zeros((2, 5), np.int32))).shape == (2, 5, 9)
        decoder = Seq2SeqDecoder(model, source_length=3, max_output_length=5)
        source = np.array([[0, 4, 5], [6, 7, 8], [0, 0, 0]], dtype=np.int32)
        greedy = decoder.greedy(source)
        assert greedy.shape == (3, 5)
        assert not np.isin(greedy, [0, GO_ID, UNK_ID]).any()
        first = np.stack(list(decoder.steps(source, temperature=1.0, seed=5)), axis=1)
        again = np.stack(list(decoder.steps(source, temperature=1.0, seed=5)), axis=1)
        assert np.array_equal(first, again)
        assert decoder.beam_search(source[:1], width=1)[0] == [int(t) for t in greedy[0][: _until_eos(greedy[0])]]
        with pytest.raises(ValueError, match="temperature"):
            next(decoder.steps(source, temperature=-1))
        with pytest.raises(ValueError, match="beam_width"):
            decoder.beam_search(source, width=0)


def _until_eos(ids) -> int:
    from worker.pipelines.seq2seq.text import EOS_ID

    ids = list(ids)
    return ids.index(EOS_ID) if EOS_ID in ids else len(ids)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_seeded_model_does_not_depend_on_pythons_global_random_generator(cell):
    # A worker's reporting thread draws from `random` while a run builds its model.
    import random

    from worker.pipelines.seq2seq.model import build_model

    first = build_model(12, 9, source_length=3, target_length=5, units=8, layers=2, cell=cell, seed=7)
    random.random()
    second = build_model(12, 9, source_length=3, target_length=5, units=8, layers=2, cell=cell, seed=7)
    other = build_model(12, 9, source_length=3, target_length=5, units=8, layers=2, cell=cell, seed=8)

    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights(), strict=True))
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])
    assert second.get_config()["seed"] == 7


def test_an_unrolled_model_decodes_as_the_trained_one(reverser):
    from worker.pipelines.seq2seq.decoding import Seq2SeqDecoder
    from worker.pipelines.seq2seq.model import build_model

    vocabulary, _, source, decoder, _ = reverser
    unrolled = build_model(len(vocabulary), len(vocabulary), source_length=4, target_length=5, units=32, layers=1, unroll=True)
    unrolled.set_weights(decoder.model.get_weights())
    serving = Seq2SeqDecoder(unrolled, source_length=4, max_output_length=5)
    assert unrolled.get_config()["unroll"] is True
    np.testing.assert_array_equal(serving.greedy(source), decoder.greedy(source))
    inputs = (source, np.ones((len(source), 5), np.int32))
    np.testing.assert_allclose(unrolled(inputs), decoder.model(inputs), atol=1e-5)
