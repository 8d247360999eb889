"""The arith oracle judge: it checks every intermediate step, not only the final answer."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa
import pytest

from satk8s.signals.oracle import OraclePairJudge, oracle_step_accuracy
from satk8s.signals.pairwise import PairJudge, PairRequest, judge_both_orders, pairwise_scores

RIGHT = " 7*3=21\n12+21=33\n#### 33"
WRONG_STEP = " 7*3=20\n12+20=33\n#### 33"  # right final answer, both steps wrong (12+20 is 32)
SLIP = " 7*3=20\n12+21=33\n#### 33"  # one wrong step, then the right product used anyway


def verdict(first: str, second: str):
    [v] = OraclePairJudge().judge([PairRequest("q", "12+7*3", 0, 1, first, second)])
    return v


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RIGHT, (2, 2)),
        (WRONG_STEP, (0, 2)),
        (SLIP, (1, 2)),
        (" 3-8=-5\n-5*2=-10\n#### -10", (2, 2)),  # negatives anywhere
        (" 3--5=8\n#### 8", (1, 1)),  # subtracting a negative
        (" 7*3=\n#### 21", (0, 1)),  # a step in a shape that cannot be checked counts as wrong
        (" #### 33", (0, 0)),
        (" 2+2=4\n#### 4\n5+5=11", (1, 1)),  # nothing after the answer line counts
    ],
)
def test_step_accuracy_counts_right_and_total_steps(text, expected):
    assert oracle_step_accuracy(text) == expected


def test_prefers_right_steps_over_a_right_answer_reached_through_a_wrong_step():
    assert verdict(RIGHT, WRONG_STEP).p_first == 1.0
    assert verdict(WRONG_STEP, RIGHT).p_first == 0.0
    assert verdict(RIGHT, WRONG_STEP).method == "oracle"
    assert verdict(SLIP, RIGHT).p_first == 0.0
    assert verdict(SLIP, WRONG_STEP).p_first == 1.0


def test_step_accuracy_comes_before_the_number_of_right_steps():
    one_of_one = " 21+12=33\n#### 33"
    two_of_three = " 7*3=21\n21+0=22\n12+21=33\n#### 33"
    assert verdict(one_of_one, two_of_three).p_first == 1.0


def test_more_right_steps_win_at_equal_accuracy():
    shows_work = " 7*3=21\n12+21=33\n#### 33"
    skips_a_step = " 12+21=33\n#### 33"
    assert verdict(skips_a_step, shows_work).p_first == 0.0


def test_the_shorter_solution_wins_at_equal_step_accuracy():
    padded = " 7*3=21\n12+21=33\nso the answer is\n#### 33"
    assert verdict(RIGHT, padded).p_first == 1.0
    assert verdict(padded, RIGHT).p_first == 0.0


def test_equal_solutions_tie():
    assert verdict(RIGHT, RIGHT).p_first == 0.5
    assert verdict(" 3+4=7\n#### 7", " 4+3=7\n#### 7").p_first == 0.5


def test_ranks_solutions_through_the_pairwise_protocol():
    completions = [WRONG_STEP, RIGHT, " 7*3=21\n12+21=33\nso\n#### 33"]
    kept = pa.table(
        {
            "question_id": ["q"] * 3,
            "sample_index": pa.array([0, 1, 2], pa.int32()),
            "prompt": ["Question: 12+7*3\nAnswer:"] * 3,
            "completion": completions,
        }
    )
    judge = OraclePairJudge()
    assert isinstance(judge, PairJudge)

    pairs = judge_both_orders(
        kept, judge, SimpleNamespace(max_all_pairs_n=8, pair_budget=10, seed=0)
    )
    scores = pairwise_scores(pairs, "external_judge").to_pylist()

    ranked = [r["sample_index"] for r in sorted(scores, key=lambda r: -r["score"])]
    assert ranked == [1, 2, 0]
