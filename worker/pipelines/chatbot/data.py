"""Dialogue data for the chatbot: the Cornell Movie-Dialogs files, pair files, and the built-in
English conversations of the `chatterbot-corpus` package.

Every source becomes a list of conversations (utterances in order); each consecutive pair of
utterances in a conversation is one (question, answer) example, as the book's
`get_tokenized_sequential_sentences` makes them.

- `cornell`: `movie_lines.txt` and `movie_conversations.txt`, anywhere in the uploaded folder, fields
  separated by ` +++$+++ `, ISO-8859-1 (the book warns UTF-8 fails). A conversation that names a line
  missing from `movie_lines.txt` is skipped whole, so no pair joins utterances that were not said one
  after the other.
- `dialogue_pairs`: `.tsv` files of `question<TAB>answer` lines and `.jsonl` files of
  `{"question": ..., "answer": ...}` (or `prompt`/`response`) pairs or `{"utterances": [...]}`
  conversations, UTF-8.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SEPARATOR = " +++$+++ "
CORNELL_ENCODING = "ISO-8859-1"
CORNELL_LINES = "movie_lines.txt"
CORNELL_CONVERSATIONS = "movie_conversations.txt"
PAIR_SUFFIXES = (".tsv", ".jsonl")
_LINE_ID = re.compile(r"L\d+")
QUESTION_KEYS = ("question", "prompt")
ANSWER_KEYS = ("answer", "response")

BUILTIN_CORPUS_FILE = "chatterbot_english.jsonl"


@dataclass(frozen=True)
class Dialogues:
    """Conversations of one dataset and what reading them skipped."""

    conversations: list[list[str]]
    skipped_conversations: int = 0

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [
            (conversation[index], conversation[index + 1])
            for conversation in self.conversations
            for index in range(len(conversation) - 1)
        ]


# Cornell Movie-Dialogs -----------------------------------------------------------------------------


def _find(folder: Path, name: str) -> Path:
    matches = sorted(path for path in Path(folder).rglob(name) if path.is_file() and not path.name.startswith("._"))
    if not matches:
        raise ValueError(
            f"{name}: not found in the dataset (the Cornell corpus needs {CORNELL_LINES} and {CORNELL_CONVERSATIONS})"
        )
    return matches[0]


def read_cornell(folder: Path) -> Dialogues:
    """The book's read_lines + read_conversations, skipping conversations with missing lines."""
    lines_path, conversations_path = _find(folder, CORNELL_LINES), _find(folder, CORNELL_CONVERSATIONS)
    lines = {fields[0].strip(): fields[-1].strip() for _, fields in _cornell_records(lines_path, 5)}
    conversations, skipped = [], 0
    for number, fields in _cornell_records(conversations_path, 4):
        line_ids = _LINE_ID.findall(fields[3])
        if not line_ids:
            raise ValueError(f"{conversations_path.name}:{number}: no line ids in {fields[3].strip()!r}")
        if any(line_id not in lines for line_id in line_ids):
            skipped += 1
            continue
        conversations.append([lines[line_id] for line_id in line_ids])
    return Dialogues(conversations, skipped)


def _cornell_records(path: Path, field_count: int) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line of a Cornell file; ValueError naming the file and
    line for a line with another number of fields."""
    with path.open(encoding=CORNELL_ENCODING, newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split(SEPARATOR)
            if len(fields) != field_count:
                raise ValueError(
                    f"{path.name}:{number}: expected {field_count} fields separated by '{SEPARATOR.strip()}', "
                    f"got {len(fields)}"
                )
            yield number, fields


def inspect_cornell(folder: Path) -> dict:
    dialogues = read_cornell(folder)
    if not dialogues.pairs:
        raise ValueError(f"{CORNELL_CONVERSATIONS}: no conversation has all its lines in {CORNELL_LINES}")
    return _stats(dialogues)


# Pair files -----------------------------------------------------------------------------------------


def read_dialogue_pairs(folder: Path) -> Dialogues:
    """Every .tsv and .jsonl file under `folder`, in path order."""
    files = sorted(
        path for path in Path(folder).rglob("*") if path.is_file() and path.suffix.lower() in PAIR_SUFFIXES
        and not path.name.startswith("._")
    )
    if not files:
        raise ValueError("dataset: no .tsv or .jsonl file of dialogue pairs found")
    conversations: list[list[str]] = []
    for path in files:
        reader = _read_tsv if path.suffix.lower() == ".tsv" else _read_jsonl
        conversations.extend(reader(path, path.relative_to(folder)))
    return Dialogues(conversations)


def _read_tsv(path: Path, name: Path) -> list[list[str]]:
    conversations = []
    for number, line in enumerate(_read_text(path, name).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{name}:{number}: expected question<TAB>answer, got {len(fields)} field(s)")
        conversations.append([fields[0].strip(), fields[1].strip()])
    return conversations


def _read_jsonl(path: Path, name: Path) -> list[list[str]]:
    conversations = []
    for number, line in enumerate(_read_text(path, name).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{name}:{number}: not JSON ({error.msg})") from None
        conversations.append(_record_utterances(record, f"{name}:{number}"))
    return conversations


def _record_utterances(record, where: str) -> list[str]:
    if isinstance(record, dict) and "utterances" in record:
        utterances = record["utterances"]
        if not isinstance(utterances, list) or not all(isinstance(item, str) for item in utterances):
            raise ValueError(f"{where}: utterances must be a list of strings")
        return [item.strip() for item in utterances]
    if isinstance(record, dict):
        question = next((record[key] for key in QUESTION_KEYS if key in record), None)
        answer = next((record[key] for key in ANSWER_KEYS if key in record), None)
        if isinstance(question, str) and isinstance(answer, str):
            return [question.strip(), answer.strip()]
    raise ValueError(f'{where}: expected {{"question": ..., "answer": ...}} or {{"utterances": [...]}} with strings')


def _read_text(path: Path, name: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{name}: not UTF-8 text") from None


def inspect_dialogue_pairs(folder: Path) -> dict:
    dialogues = read_dialogue_pairs(folder)
    if not dialogues.pairs:
        raise ValueError("dataset: no (question, answer) pair found")
    return _stats(dialogues)


def _stats(dialogues: Dialogues) -> dict:
    return {
        "conversations": len(dialogues.conversations),
        "pairs": len(dialogues.pairs),
        "skipped_conversations": dialogues.skipped_conversations,
    }


# The built-in corpus ----------------------------------------------------------------------------------


def chatterbot_conversations(language: str = "english") -> list[list[str]]:
    """The conversations of chatterbot-corpus's YAML files for `language`, files in name order."""
    import chatterbot_corpus
    import yaml

    folder = Path(chatterbot_corpus.__file__).parent / "data" / language
    if not folder.is_dir():
        raise ValueError(f"language: chatterbot-corpus has no {language!r} folder")
    conversations = []
    for path in sorted(folder.glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in document.get("conversations") or []:
            # A few answers are YAML numbers or booleans; the corpus means their text.
            conversations.append([str(utterance).strip() for utterance in conversation])
    return conversations


def build_chatterbot_corpus(cache_root: Path) -> tuple[Path, str]:
    """The English chatterbot-corpus as a `dialogue_pairs` folder (one JSONL of conversations), and
    its sha256; written once per content."""
    lines = "".join(
        json.dumps({"utterances": conversation}, ensure_ascii=False) + "\n" for conversation in chatterbot_conversations()
    ).encode("utf-8")
    sha256 = hashlib.sha256(lines).hexdigest()
    folder = Path(cache_root) / f"chatterbot_english-{sha256[:12]}"
    target = folder / BUILTIN_CORPUS_FILE
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp")
        temporary.write_bytes(lines)
        temporary.replace(target)
    return folder, sha256


def read_dialogues(folder: Path, kind: str) -> Dialogues:
    if kind == "cornell":
        return read_cornell(folder)
    if kind == "dialogue_pairs":
        return read_dialogue_pairs(folder)
    raise ValueError(f"dataset kind: chatbot reads 'cornell' or 'dialogue_pairs', not {kind!r}")
