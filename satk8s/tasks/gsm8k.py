"""GSM8K questions (openai/gsm8k, "main" config) from local JSONL files or the Hugging Face hub.

The train split (7,473) is the sampling pool the method saturates; the test split (1,319) is
an evaluation set. Each JSONL line holds `question` and `answer`, the worked solution with
calculator annotations (`<<48/2=24>>`) and a final line `#### N`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from satk8s.errors import ConfigError, DataError
from satk8s.tasks.answers import hash_answer
from satk8s.tasks.base import Question

SPLITS: tuple[str, ...] = ("train", "test")
HUB_DATASET = "openai/gsm8k"
HUB_CONFIG = "main"

# "<<48/2=24>>": the calculator calls GSM8K's authors inserted; a base model never sees them.
_CALCULATOR_ANNOTATION = re.compile(r"<<[^<>]*>>")
_FINAL_LINE = re.compile(r"####[^\n]*$")
_PATH_HINT = (
    "pass `path` as a directory holding train.jsonl/test.jsonl (like data/gsm8k/) "
    "or as a .jsonl file, or path=None to load openai/gsm8k from the hub"
)


def load_gsm8k(
    split: str, path: str | os.PathLike[str] | None = None, limit: int | None = None
) -> list[Question]:
    """The first `limit` (default all) questions of a GSM8K split.

    `path` is a directory holding `{split}.jsonl`, a .jsonl file, or None for the hub.
    Ids are `gsm8k-{split}-{index:05d}`, the index counting records of the split from 0.
    Raises DataError naming the file and line for anything unreadable.
    """
    if split not in SPLITS:
        raise ConfigError("split", f"unknown GSM8K split {split!r}; use one of {list(SPLITS)}")
    if limit is not None and limit < 0:
        raise ConfigError("limit", f"must be >= 0 or None (all questions), got {limit}")
    if path is None:
        where, records = f"{HUB_DATASET} ({HUB_CONFIG}, {split})", _hub_records(split)
    else:
        file = _split_file(Path(path), split)
        where, records = str(file), _jsonl_records(file)
    questions = []
    for index, (line, record) in enumerate(records):
        if limit is not None and index >= limit:
            break
        questions.append(_to_question(record, split, index, where, line))
    return questions


def strip_calculator_annotations(text: str) -> str:
    """GSM8K solution text without its `<<a*b=c>>` calculator annotations."""
    return _CALCULATOR_ANNOTATION.sub("", text)


def clean_solution(text: str, answer: str) -> str:
    """The solution as a base model should write it: no annotations, ending `#### <answer>`.

    The final line is rewritten to the canonical answer ("#### 1,080" -> "#### 1080") so
    every reference solution has the form the Question record promises.
    """
    return _FINAL_LINE.sub(f"#### {answer}", strip_calculator_annotations(text).rstrip())


def _split_file(path: Path, split: str) -> Path:
    file = path / f"{split}.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise DataError(str(file), f"no such GSM8K file; {_PATH_HINT}")
    return file


def _jsonl_records(file: Path) -> Iterator[tuple[int, Any]]:
    """(1-based line number, decoded JSON) for each non-blank line."""
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                # json's own message ends where the position would follow ("Unterminated string
                # starting at"): give the position too, so it reads as a sentence.
                raise DataError(
                    str(file),
                    f"not valid JSON: {err.msg.removesuffix(' at')} at column {err.colno}; "
                    "each line must be one JSON object with question and answer",
                    line=number,
                ) from err


def _hub_records(split: str) -> Iterable[tuple[int | None, Any]]:
    try:
        from datasets import load_dataset  # heavy, and only this path needs it
    except ImportError as err:
        raise DataError(HUB_DATASET, f"the `datasets` package is missing; {_PATH_HINT}") from err
    try:
        rows = load_dataset(HUB_DATASET, HUB_CONFIG, split=split)
    except Exception as err:  # network, auth, cache: all end in the same advice
        raise DataError(HUB_DATASET, f"could not load from the hub ({err}); {_PATH_HINT}") from err
    return ((None, row) for row in rows)


def _to_question(record: Any, split: str, index: int, where: str, line: int | None) -> Question:
    if not isinstance(record, dict):
        raise DataError(where, f"expected a JSON object, got {type(record).__name__}", line=line)
    for field in ("question", "answer"):
        if not isinstance(record.get(field), str):
            raise DataError(
                where, f"missing string field {field!r} (each line needs question and answer)", line
            )
    answer = hash_answer(record["answer"])
    if answer is None:
        raise DataError(where, "the answer has no final '#### N' number", line=line)
    return Question(
        id=f"gsm8k-{split}-{index:05d}",
        question=record["question"].strip(),
        answer=answer,
        solution=clean_solution(record["answer"], answer),
    )
