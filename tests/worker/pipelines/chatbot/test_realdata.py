"""The Cornell loader on the real sample ($DLSITE_REALDATA_DIR/cornell: the corpus's two files, cut)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.pipelines.chatbot import data
from worker.pipelines.seq2seq import text

SAMPLE = Path(os.environ.get("DLSITE_REALDATA_DIR") or "/nonexistent") / "cornell"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not os.environ.get("DLSITE_REALDATA_DIR"), reason="DLSITE_REALDATA_DIR is not set"),
    pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"{SAMPLE} does not exist"),
]


def test_cornell_sample_counts_exactly():
    folder = SAMPLE
    dialogues = data.read_cornell(folder)
    # The sample keeps 28,675 of the lines and all 43,756 conversations (counted independently with
    # cut/awk): 8,067 conversations have all their lines, 35,688 do not.
    assert len(dialogues.conversations) == 8067
    assert dialogues.skipped_conversations == 35688
    assert len(dialogues.pairs) == 20609
    # The book's first raw pair, and its first answer tokenised as it prints it.
    question, answer = dialogues.pairs[0]
    assert question.startswith("Can we make this quick?  Roxanne Korrine and Andrew Barrett")
    assert answer == "Well, I thought we'd start with pronunciation, if that's okay with you."
    assert text.tokenise(answer)[:8] == ["well", ",", "i", "thought", "we", "'", "d", "start"]
