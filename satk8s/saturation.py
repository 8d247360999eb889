"""Verify every sample, measure per-question accuracy, and keep the saturated questions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from satk8s.tasks.answers import answers_match, extract_answer
from satk8s.tasks.base import STOP_STRINGS

ACCURACY_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("n_samples", pa.int32()),
        ("n_correct", pa.int32()),
        ("accuracy", pa.float64()),
        ("saturated", pa.bool_()),
    ]
)


def verify_samples(
    samples: pa.Table, gold: Mapping[str, str], stop: Sequence[str] = STOP_STRINGS
) -> pa.Table:
    """The samples table with `extracted_answer` and `correct` columns added."""
    extracted = [extract_answer(c, stop) for c in samples.column("completion").to_pylist()]
    ids = samples.column("question_id").to_pylist()
    correct = [answers_match(a, gold[q]) for a, q in zip(extracted, ids, strict=True)]
    return samples.append_column(
        "extracted_answer", pa.array(extracted, pa.string())
    ).append_column("correct", pa.array(correct, pa.bool_()))


def question_accuracy(verified: pa.Table, threshold: float) -> pa.Table:
    """One row per question: samples, correct samples, accuracy, and whether it is saturated."""
    counts: dict[str, list[int]] = {}
    for qid, ok in zip(
        verified.column("question_id").to_pylist(),
        verified.column("correct").to_pylist(),
        strict=True,
    ):
        total_correct = counts.setdefault(qid, [0, 0])
        total_correct[0] += 1
        total_correct[1] += int(ok)
    rows = [
        {
            "question_id": qid,
            "n_samples": n,
            "n_correct": c,
            "accuracy": c / n,
            "saturated": c / n >= threshold,
        }
        for qid, (n, c) in counts.items()
    ]
    return pa.Table.from_pylist(rows, schema=ACCURACY_SCHEMA)


def kept_solutions(verified: pa.Table, accuracy: pa.Table) -> pa.Table:
    """The correct samples of the saturated questions: what the signals score."""
    saturated = pc.filter(accuracy.column("question_id"), accuracy.column("saturated"))
    mask = pc.and_(
        pc.is_in(verified.column("question_id"), value_set=saturated), verified.column("correct")
    )
    return verified.filter(mask)


def accuracy_histogram(accuracy: pa.Table) -> dict[str, int]:
    """How many questions reached each empirical accuracy (k/n, as a 3-decimal string)."""
    values = Counter(f"{a:.3f}" for a in accuracy.column("accuracy").to_pylist())
    return dict(sorted(values.items()))
