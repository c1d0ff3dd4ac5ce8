"""Dialogue loaders: Cornell files, TSV/JSONL pairs and the built-in chatterbot corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.pipelines.chatbot import data

LINES = [
    "L1 +++$+++ u0 +++$+++ m0 +++$+++ BIANCA +++$+++ Can we go?",
    "L2 +++$+++ u2 +++$+++ m0 +++$+++ CAMERON +++$+++ Well, I thought we'd start.",
    "L3 +++$+++ u0 +++$+++ m0 +++$+++ BIANCA +++$+++ Not the spitting part.  Please.",
    "L4 +++$+++ u2 +++$+++ m0 +++$+++ CAMERON +++$+++ Caf\xe9?",
    "L5 +++$+++ u0 +++$+++ m0 +++$+++ BIANCA +++$+++ ",
]
CONVERSATIONS = [
    "u0 +++$+++ u2 +++$+++ m0 +++$+++ ['L1', 'L2', 'L3']",
    "u0 +++$+++ u2 +++$+++ m0 +++$+++ ['L4', 'L9']",  # L9 is missing: skipped whole
    "u0 +++$+++ u2 +++$+++ m0 +++$+++ ['L4', 'L5']",
]


def write_cornell(folder: Path) -> Path:
    corpus = folder / "cornell movie-dialogs corpus"
    corpus.mkdir(parents=True)
    (corpus / "movie_lines.txt").write_bytes("\n".join(reversed(LINES)).encode("iso-8859-1") + b"\n")
    (corpus / "movie_conversations.txt").write_bytes("\n".join(CONVERSATIONS).encode("iso-8859-1") + b"\n\n")
    return folder


def test_cornell_pairs_consecutive_lines_and_skips_conversations_with_missing_lines(tmp_path):
    dialogues = data.read_cornell(write_cornell(tmp_path))
    assert dialogues.skipped_conversations == 1
    assert dialogues.pairs == [
        ("Can we go?", "Well, I thought we'd start."),
        ("Well, I thought we'd start.", "Not the spitting part.  Please."),
        ("Café?", ""),  # ISO-8859-1 decoded; an empty line is kept, as the book keeps it
    ]
    assert data.inspect_cornell(tmp_path) == {"conversations": 2, "pairs": 3, "skipped_conversations": 1}


def test_cornell_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="movie_lines.txt: not found"):
        data.read_cornell(tmp_path)
    write_cornell(tmp_path)
    lines = tmp_path / "cornell movie-dialogs corpus" / "movie_lines.txt"
    lines.write_text("L1 +++$+++ u0 +++$+++ only three\n", encoding="iso-8859-1")
    with pytest.raises(ValueError, match=r"movie_lines.txt:1: expected 5 fields"):
        data.read_cornell(tmp_path)


def test_pair_files_tsv_and_jsonl(tmp_path):
    (tmp_path / "a.tsv").write_text("hi\thello\n\nhow are you?\tfine.\n", encoding="utf-8")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "c.jsonl").write_text(
        json.dumps({"question": "q1", "answer": "a1"}) + "\n"
        + json.dumps({"prompt": "q2", "response": "a2"}) + "\n"
        + json.dumps({"utterances": ["one", "two", "three"]}) + "\n",
        encoding="utf-8",
    )
    dialogues = data.read_dialogue_pairs(tmp_path)
    assert dialogues.pairs == [
        ("hi", "hello"), ("how are you?", "fine."), ("q1", "a1"), ("q2", "a2"), ("one", "two"), ("two", "three"),
    ]
    assert data.inspect_dialogue_pairs(tmp_path) == {"conversations": 5, "pairs": 6, "skipped_conversations": 0}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.tsv", "just one field\n", r"x.tsv:1: expected question<TAB>answer"),
        ("x.jsonl", "{not json\n", r"x.jsonl:1: not JSON"),
        ("x.jsonl", '{"question": "q"}\n', r"x.jsonl:1: expected"),
        ("x.jsonl", '{"utterances": [1, 2]}\n', r"x.jsonl:1: utterances must be a list of strings"),
    ],
)
def test_pair_file_errors_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        data.read_dialogue_pairs(tmp_path)


def test_no_pair_file_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="no .tsv or .jsonl file"):
        data.read_dialogue_pairs(tmp_path)


def test_builtin_chatterbot_corpus_is_read_offline_and_cached(tmp_path):
    folder, sha256 = data.build_chatterbot_corpus(tmp_path)
    again, same = data.build_chatterbot_corpus(tmp_path)
    assert (again, same) == (folder, sha256)
    dialogues = data.read_dialogue_pairs(folder)
    # chatterbot-corpus 1.3.3, English: 21 files, 2026 conversations, 2393 consecutive pairs.
    assert len(dialogues.conversations) == 2026
    assert len(dialogues.pairs) == 2393
    assert ("Hello", "Hi") in dialogues.pairs
