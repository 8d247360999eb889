"""The random control signal: seeded, uniform, and blind to row order."""

from __future__ import annotations

import json

import pyarrow as pa

from satk8s.signals.random_control import random_scores
from satk8s.signals.schema import SCORES_SCHEMA


def kept_table(rows: list[tuple[str, int]]) -> pa.Table:
    return pa.table(
        {
            "question_id": [q for q, _ in rows],
            "sample_index": pa.array([i for _, i in rows], pa.int32()),
            "completion": [" 1+1=2\n#### 2"] * len(rows),
        }
    )


ROWS = [(f"q{q}", i) for q in range(5) for i in range(8)]


def as_dict(table: pa.Table) -> dict[tuple[str, int], float]:
    return {(r["question_id"], r["sample_index"]): r["score"] for r in table.to_pylist()}


def test_scores_follow_the_schema_and_lie_in_the_unit_interval():
    table = random_scores(kept_table(ROWS), seed=0)
    assert table.schema == SCORES_SCHEMA
    assert table.num_rows == len(ROWS)
    assert set(table.column("signal").to_pylist()) == {"random"}
    scores = table.column("score").to_pylist()
    assert all(0.0 <= s < 1.0 for s in scores)
    assert table.column("raw_score").to_pylist() == scores
    assert json.loads(table.column("details")[0].as_py()) == {"seed": 0}
    assert len(set(scores)) == len(scores)


def test_the_same_seed_gives_the_same_scores():
    assert random_scores(kept_table(ROWS), 7).equals(random_scores(kept_table(ROWS), 7))


def test_scores_do_not_depend_on_row_order_or_on_the_other_rows():
    full = as_dict(random_scores(kept_table(ROWS), 7))
    reversed_rows = as_dict(random_scores(kept_table(ROWS[::-1]), 7))
    subset = as_dict(random_scores(kept_table(ROWS[3:9]), 7))
    assert reversed_rows == full
    assert subset == {k: full[k] for k in ROWS[3:9]}


def test_different_seeds_give_different_scores():
    a = as_dict(random_scores(kept_table(ROWS), 0))
    b = as_dict(random_scores(kept_table(ROWS), 1))
    assert all(a[k] != b[k] for k in ROWS)


def test_scores_are_roughly_uniform():
    rows = [(f"q{q}", i) for q in range(250) for i in range(8)]
    scores = random_scores(kept_table(rows), 3).column("score").to_pylist()
    assert abs(sum(scores) / len(scores) - 0.5) < 0.03
    assert abs(sum(s < 0.25 for s in scores) / len(scores) - 0.25) < 0.03
