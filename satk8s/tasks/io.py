"""The question table that `prepare` writes and `generate`/`saturate` read: one Parquet per split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from satk8s.errors import DataError
from satk8s.tasks.base import Question

QUESTIONS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("solution", pa.string()),
        ("prompt", pa.string()),  # the exact model input, few-shot blocks included
    ]
)


def write_questions(path: Path, questions: Sequence[Question], prompts: Sequence[str]) -> None:
    rows = [{**q.to_dict(), "prompt": p} for q, p in zip(questions, prompts, strict=True)]
    pq.write_table(pa.Table.from_pylist(rows, schema=QUESTIONS_SCHEMA), path)


def split_file(questions_dir: Path, split: str) -> Path:
    """The Parquet file of one split, with an error that lists the splits that do exist."""
    path = questions_dir / f"{split}.parquet"
    if not path.is_file():
        found = sorted(p.stem for p in questions_dir.glob("*.parquet"))
        raise DataError(str(questions_dir), f"no split '{split}' here; splits present: {found}")
    return path


def read_questions(questions_dir: Path, split: str) -> tuple[list[Question], list[str]]:
    """The questions of one split and their prompts."""
    table = pq.read_table(split_file(questions_dir, split))
    missing = set(QUESTIONS_SCHEMA.names) - set(table.column_names)
    if missing:
        raise DataError(
            str(questions_dir / f"{split}.parquet"), f"missing columns {sorted(missing)}"
        )
    rows = table.to_pylist()
    questions = [Question(r["id"], r["question"], r["answer"], r["solution"]) for r in rows]
    return questions, [r["prompt"] for r in rows]
