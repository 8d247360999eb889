"""The one table every signal writes, keyed by (question_id, sample_index).

`score` is oriented so that higher means better for every signal (entropy is negated by
default), so training-set builders can rank by any signal the same way. `raw_score` keeps the
signal's own value (mean entropy, Bradley-Terry strength, ...); `details` holds the signal's
diagnostics as a JSON object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

SCORES_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("sample_index", pa.int32()),
        ("signal", pa.string()),
        ("score", pa.float64()),
        ("raw_score", pa.float64()),
        ("details", pa.string()),
    ]
)


@dataclass
class ScoreRow:
    question_id: str
    sample_index: int
    signal: str
    score: float
    raw_score: float
    details: dict[str, Any] = field(default_factory=dict)


def scores_table(rows: Sequence[ScoreRow]) -> pa.Table:
    """Rows as a SCORES_SCHEMA table, sorted by (question_id, sample_index)."""
    ordered = sorted(rows, key=lambda r: (r.question_id, r.sample_index))
    return pa.Table.from_pylist(
        [
            {
                "question_id": r.question_id,
                "sample_index": r.sample_index,
                "signal": r.signal,
                "score": float(r.score),
                "raw_score": float(r.raw_score),
                "details": json.dumps(r.details, sort_keys=True),
            }
            for r in ordered
        ],
        schema=SCORES_SCHEMA,
    )


SCORE_TOLERANCE = 1e-7
"""Two scores closer than this (relative to max(1, |a|, |b|)) are a tie, wherever scores are
compared (calibration, rankings, training-set weights). Far above float noise (a
Bradley-Terry strength refitted in another order, a logit computed in another batch), far below
any difference a signal means."""


def scores_tie(a: float, b: float) -> bool:
    """Whether two scores are equal within `SCORE_TOLERANCE`."""
    return abs(a - b) <= SCORE_TOLERANCE * max(1.0, abs(a), abs(b))


def snap_ties(values: Sequence[float]) -> list[float]:
    """`values` with every group of tied scores replaced by one value, so exact comparisons
    (sorting, Kendall's tau, signs of differences) see ties as ties.

    In increasing order, a value that ties the first value of the current group joins it and
    takes that value; otherwise it starts a new group. Groups are anchored at their first value,
    so a chain of near-equal values cannot merge scores that differ by more than the tolerance.
    """
    order = sorted(range(len(values)), key=lambda k: values[k])
    snapped = list(values)
    anchor = None
    for k in order:
        if anchor is None or not scores_tie(anchor, values[k]):
            anchor = values[k]
        snapped[k] = anchor
    return snapped
