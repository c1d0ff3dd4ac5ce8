"""Tokenisation, vocabularies, padding and detokenisation of the shared seq2seq module."""

from __future__ import annotations

import numpy as np
import pytest

from worker.pipelines.seq2seq import text


def test_tokenise_is_the_books_clean_sentence():
    # The book's first Cornell answer, as its printed example tokenises it (apostrophes as tokens).
    assert text.tokenise("Well, I thought we'd start with pronunciation, if that's okay with you.") == [
        "well", ",", "i", "thought", "we", "'", "d", "start", "with", "pronunciation", ",", "if", "that", "'", "s",
        "okay", "with", "you", ".",
    ]
    assert text.tokenise('  He said: "($5)!"  break-up ') == [
        "he", "said", ":", '"', "(", "$", "5", ")", "!", '"', "break-up",
    ]
    assert text.tokenise("") == []


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ("i ' m here with you .", "i'm here with you."),
        ("that ' s okay .", "that's okay."),
        ("we don ' t know .", "we don't know."),
        ("yes .", "yes."),
        ('he said " hello , there " and left', 'he said "hello, there" and left'),
        ("it costs $ 5 ( or so ) !", "it costs $5 (or so)!"),
        ("the dogs ' bones", "the dogs' bones"),
        ("' quoted ' word", "'quoted' word"),
    ],
)
def test_detokenise_reads_like_text(tokens, expected):
    assert text.detokenise(tokens.split()) == expected


def test_detokenised_pieces_add_up_to_the_whole_reply():
    tokens = "well , i ' m sure \" we ' ll \" see ( maybe ) .".split()
    detokeniser = text.Detokeniser()
    pieces = [detokeniser.add(token) for token in tokens]
    assert "".join(pieces) == text.detokenise(tokens) == 'well, i\'m sure "we\'ll" see (maybe).'
    for end in range(len(tokens)):  # every prefix reads the same as it did when streamed
        assert "".join(pieces[:end]) == text.detokenise(tokens[:end])


def test_vocabulary_has_specials_first_then_tokens_by_frequency():
    vocabulary = text.Vocabulary.build([["b", "a", "b"], ["c", "b", "a"], ["d"]], size=3)
    assert vocabulary.tokens == ("_PAD", "_GO", "_EOS", "_UNK", "b", "a", "c")
    assert vocabulary.ids(["a", "d", "b"]) == [5, text.UNK_ID, 4]
    assert vocabulary.unknown_count([["d", "d", "a"], ["e"]]) == 3  # occurrences, as the book counts
    assert text.Vocabulary.from_json(vocabulary.to_json()) == vocabulary
    with pytest.raises(ValueError, match="first tokens"):
        text.Vocabulary(("a", "b"))


def test_padding_adds_go_and_eos_once():
    assert text.pad_source([7, 8], 4) == [0, 0, 7, 8]
    assert text.pad_source([5, 6, 7, 8, 9], 3) == [7, 8, 9]
    assert text.pad_target([7, 8], 4) == [text.GO_ID, 7, 8, text.EOS_ID, 0, 0]
    # The book's example answer (11 tokens, max 20): 22 ids, one GO.
    padded = text.pad_target(list(range(10, 21)), 20)
    assert len(padded) == 22 and padded.count(text.GO_ID) == 1 and padded[12] == text.EOS_ID


def test_arrays_shift_targets_by_one():
    vocabulary = text.Vocabulary.build([["hi", "there"]], size=10)
    source = text.source_array([["hi"], ["there", "hi", "you"]], vocabulary, 3)
    assert source.tolist() == [[0, 0, 4], [5, 4, 3]]
    inputs, targets = text.target_arrays([["hi", "there"]], vocabulary, 3)
    assert inputs.tolist() == [[1, 4, 5, 2]]
    assert targets.tolist() == [[4, 5, 2, 0]]
    assert inputs.dtype == targets.dtype == np.int32


def test_filter_keeps_pairs_within_the_length_on_both_sides():
    pairs = [(["a"] * 3, ["b"] * 2), (["a"] * 4, ["b"]), (["a"], ["b"] * 4), ([], ["b"])]
    assert text.filter_by_length(pairs, max_length=3) == [pairs[0], pairs[3]]
    assert text.filter_by_length(pairs, max_length=3, min_length=1) == [pairs[0]]


def test_ids_to_tokens_stops_at_eos():
    vocabulary = text.Vocabulary.build([["yes", "no"]], size=10)
    assert text.ids_to_tokens([4, 5, text.EOS_ID, 4], vocabulary) == ["yes", "no"]
    assert text.ids_to_tokens([text.GO_ID, 5, 0], vocabulary) == ["no"]
