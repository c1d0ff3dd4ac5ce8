"""Text for the seq2seq pipelines: the book's cleaning, vocabularies, padding and detokenisation.

Tokenisation is the book's `clean_sentence` (ch6 `corpora_tools.py`): words split on spaces,
lowercased, and the characters ``! ? . , : ; $ " ' ) (`` split off as tokens of their own, so
"We'd start." becomes ``we ' d start .``. A vocabulary holds the four special tokens at ids 0-3
and then the `size` most frequent tokens, most frequent first (`create_indexed_dictionary`).

Sequences have fixed lengths, as in the book's single bucket: a source of up to `max_length`
tokens is left-padded to `max_length`; a target becomes ``GO t1 .. tn EOS PAD ..`` of
`max_length + 2`. The book's code added GO twice (its `prepare_sentences` and the upstream
`get_batch` both did) and cut the decoder to `max_length`, losing the EOS of long replies: here GO
and EOS are added once and the decoder sees the whole sequence.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAD, GO, EOS, UNK = "_PAD", "_GO", "_EOS", "_UNK"
SPECIAL_TOKENS = (PAD, GO, EOS, UNK)
PAD_ID, GO_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

# The book's splitter (ch6 corpora_tools.clean_sentence, as in its code bundle; the print is garbled).
_SPLITTER = re.compile("([!?.,:;$\"')( ])")

# Detokenisation: tokens written against the previous one, and the halves of English contractions.
_NO_SPACE_BEFORE = frozenset(".,!?:;)%")
_NO_SPACE_AFTER = frozenset("($")
_CONTRACTION_ENDINGS = frozenset({"s", "m", "t", "d", "ll", "re", "ve"})


def tokenise(sentence: str) -> list[str]:
    """The book's clean_sentence on a raw string: ``"I'm here."`` -> ``["i", "'", "m", "here", "."]``."""
    return [piece for word in sentence.split() for piece in _SPLITTER.split(word.lower()) if piece.strip()]


class Detokeniser:
    """Joins tokens into readable text one token at a time ("i ' m here ." -> "i'm here.").

    Whether a space goes before a token depends only on the tokens before it, so the text of a
    prefix never changes when more tokens come: a streamed reply is the concatenation of the pieces
    `add` returns.
    """

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self._opening: list[bool] = []  # per token: a quote that opens (the next token sticks to it)
        self._double_quotes = 0

    def add(self, token: str) -> str:
        """The text this token adds to the reply so far (with its leading space, if any)."""
        space, opening = self._space_before(token), False
        previous_alnum = bool(self.tokens) and self.tokens[-1][-1:].isalnum()
        if token == '"':
            opening = self._double_quotes % 2 == 0
            self._double_quotes += 1
            space = space and opening
        elif token == "'":
            opening = not previous_alnum
            space = space and opening
        self.tokens.append(token)
        self._opening.append(opening)
        return (" " if space else "") + token

    def _space_before(self, token: str) -> bool:
        if not self.tokens or token in _NO_SPACE_BEFORE:
            return False
        previous = self.tokens[-1]
        if previous in _NO_SPACE_AFTER or self._opening[-1]:
            return False
        if previous == "'" and token in _CONTRACTION_ENDINGS and len(self.tokens) > 1 and self.tokens[-2][-1:].isalnum():
            return False  # i ' m -> i'm, don ' t -> don't
        return True


def detokenise(tokens: Iterable[str]) -> str:
    detokeniser = Detokeniser()
    return "".join(detokeniser.add(token) for token in tokens)


@dataclass(frozen=True)
class Vocabulary:
    """Token <-> id for one side; ids 0-3 are the special tokens, then by falling frequency."""

    tokens: tuple[str, ...]

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], size: int) -> Vocabulary:
        """The book's create_indexed_dictionary: the `size` most frequent tokens after the specials.

        Ties are broken by first appearance (Counter.most_common keeps insertion order).
        """
        counts = Counter(token for sentence in sentences for token in sentence)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        return cls(SPECIAL_TOKENS + tuple(token for token, _ in counts.most_common(size)))

    def __post_init__(self) -> None:
        if self.tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary: the first tokens must be {', '.join(SPECIAL_TOKENS)}")
        object.__setattr__(self, "_ids", {token: index for index, token in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """Token ids, UNK_ID for tokens outside the vocabulary."""
        return [self._ids.get(token, UNK_ID) for token in tokens]

    def unknown_count(self, sentences: Iterable[Sequence[str]]) -> int:
        """Token occurrences outside the vocabulary (the book's "Did not find N words")."""
        return sum(token not in self._ids for sentence in sentences for token in sentence)

    def token(self, token_id: int) -> str:
        return self.tokens[token_id]

    def to_json(self) -> str:
        return json.dumps(list(self.tokens), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        tokens = json.loads(text)
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise ValueError("vocabulary: expected a JSON list of tokens")
        return cls(tuple(tokens))

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def filter_by_length(
    pairs: Iterable[tuple[list[str], list[str]]], *, max_length: int, min_length: int = 0
) -> list[tuple[list[str], list[str]]]:
    """The book's filter_sentence_length: pairs whose both sides have min..max tokens."""
    return [
        (source, target)
        for source, target in pairs
        if min_length <= len(source) <= max_length and min_length <= len(target) <= max_length
    ]


def pad_source(ids: Sequence[int], length: int) -> list[int]:
    """Left-padded to `length` (the book's), keeping the last `length` tokens of a longer input."""
    ids = list(ids)[-length:] if length else []
    return [PAD_ID] * (length - len(ids)) + ids


def pad_target(ids: Sequence[int], max_length: int) -> list[int]:
    """``GO t1 .. tn EOS`` right-padded to `max_length + 2`; longer targets are cut to `max_length`."""
    ids = list(ids)[:max_length]
    return [GO_ID, *ids, EOS_ID] + [PAD_ID] * (max_length - len(ids))


def source_array(sentences: Sequence[Sequence[str]], vocabulary: Vocabulary, max_length: int) -> np.ndarray:
    """int32 [n, max_length] of left-padded source ids."""
    return np.array(
        [pad_source(vocabulary.ids(sentence), max_length) for sentence in sentences], dtype=np.int32
    ).reshape(len(sentences), max_length)


def target_arrays(
    sentences: Sequence[Sequence[str]], vocabulary: Vocabulary, max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """(decoder inputs, decoder targets), int32 [n, max_length + 1] each: ``GO t1 .. tn EOS PAD ..``
    shifted by one, so that the model learns to predict each token from the ones before it."""
    padded = np.array(
        [pad_target(vocabulary.ids(sentence), max_length) for sentence in sentences], dtype=np.int32
    ).reshape(len(sentences), max_length + 2)
    return padded[:, :-1], padded[:, 1:]


def ids_to_tokens(ids: Iterable[int], vocabulary: Vocabulary) -> list[str]:
    """Tokens of a decoded sequence, cut at the first EOS; padding and GO dropped."""
    tokens = []
    for token_id in ids:
        token_id = int(token_id)
        if token_id == EOS_ID:
            break
        if token_id in (PAD_ID, GO_ID):
            continue
        tokens.append(vocabulary.token(token_id))
    return tokens
