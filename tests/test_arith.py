"""The arith task: exact answers, worked solutions, seeded splits, step parsing, validation."""

from __future__ import annotations

import random

import pytest

from satk8s.errors import ConfigError
from satk8s.tasks.arith import (
    LEVELS,
    ArithLevel,
    ArithTaskConfig,
    evaluate,
    fewshot_examples,
    generate_questions,
    make_splits,
    parse_steps,
    random_expression,
    solution_for,
    steps_for,
    tokenize,
)
from satk8s.tasks.base import format_prompt


@pytest.mark.parametrize(
    ("expression", "answer", "solution"),
    [
        ("3+4", 7, "3+4=7\n#### 7"),
        ("3-8", -5, "3-8=-5\n#### -5"),
        ("3-8+4", -1, "3-8=-5\n-5+4=-1\n#### -1"),
        ("12+7*3", 33, "7*3=21\n12+21=33\n#### 33"),
        ("7*3+12", 33, "7*3=21\n21+12=33\n#### 33"),
        ("2*3*4-5", 19, "2*3=6\n6*4=24\n24-5=19\n#### 19"),
        ("9-9*9+1", -71, "9*9=81\n9-81=-72\n-72+1=-71\n#### -71"),
        ("10-4-3", 3, "10-4=6\n6-3=3\n#### 3"),
        ("0*0", 0, "0*0=0\n#### 0"),
    ],
)
def test_answer_and_worked_solution_of_fixed_expressions(expression, answer, solution):
    assert evaluate(expression) == answer
    assert solution_for(expression) == solution


def test_answers_match_python_precedence_on_random_expressions():
    rng = random.Random(7)
    for level in LEVELS.values():
        for _ in range(200):
            expression = random_expression(level, rng)
            assert evaluate(expression) == eval(expression)  # only digits and + - *


@pytest.mark.parametrize("bad", ["1 + 2", "1++2", "-3+1", "1+", "", "2/3", "x"])
def test_malformed_expression_is_rejected(bad):
    with pytest.raises(ValueError, match="not an arith expression"):
        evaluate(bad)


def test_question_record_and_prompt():
    [question] = generate_questions(LEVELS["hard"], 1, seed=3, prefix="t")
    assert question.id == "t-00000"
    assert question.answer == str(eval(question.question))
    assert question.solution.endswith(f"\n#### {question.answer}")
    assert format_prompt(question.question) == f"Question: {question.question}\nAnswer:"


def test_generate_questions_is_deterministic_under_seed():
    level = LEVELS["medium"]
    first = generate_questions(level, 50, seed=11)
    assert first == generate_questions(level, 50, seed=11)
    assert first != generate_questions(level, 50, seed=12)


def test_generate_questions_are_unique_of_the_level_and_skip_excluded():
    level = LEVELS["easy"]
    excluded = {"3+4", "9-9", "0+0"}
    questions = generate_questions(level, 197, seed=0, exclude=excluded, prefix="p")
    expressions = [q.question for q in questions]
    assert len(set(expressions)) == 197
    assert not excluded & set(expressions)
    assert [q.id for q in questions[:2]] == ["p-00000", "p-00001"]
    for e in expressions:
        assert len(e) == 3 and e[1] in "+-"


def test_generate_questions_draws_large_levels_at_random():
    level = ArithLevel(operands=3, digits=3, operators="+-*")  # too many to enumerate
    questions = generate_questions(level, 20, seed=0, exclude={"1+2+3"})
    assert len({q.question for q in questions}) == 20
    assert questions == generate_questions(level, 20, seed=0, exclude={"1+2+3"})


def test_asking_for_more_questions_than_the_level_has_names_the_count():
    assert LEVELS["easy"].size == 200
    with pytest.raises(ConfigError, match="only 200 distinct expressions") as info:
        generate_questions(LEVELS["easy"], 201, seed=0)
    assert info.value.field == "count"
    with pytest.raises(ConfigError, match="only 199"):
        generate_questions(LEVELS["easy"], 200, seed=0, exclude={"1+1"})


def test_default_splits_are_disjoint_sized_and_deterministic():
    splits = make_splits(ArithTaskConfig())
    assert {name: len(qs) for name, qs in splits.items()} == {
        "train": 200,
        "eval_id": 100,
        "eval_hard": 100,
    }
    sets = {name: {q.question for q in qs} for name, qs in splits.items()}
    assert not sets["train"] & sets["eval_id"]
    assert not sets["train"] & sets["eval_hard"]
    assert not sets["eval_id"] & sets["eval_hard"]
    ids = [q.id for qs in splits.values() for q in qs]
    assert len(set(ids)) == len(ids)
    assert splits["train"][0].id == "train-easy-00000"
    assert splits["eval_hard"][0].id == "eval_hard-hard-00000"
    assert make_splits(ArithTaskConfig()) == splits
    assert make_splits(ArithTaskConfig(seed=1))["train"] != splits["train"]


def test_splits_follow_the_configured_levels_and_counts():
    config = ArithTaskConfig(train={"medium": 30}, eval_id={"medium": 10}, eval_hard={"hard": 5})
    splits = make_splits(config)
    assert [len(splits[s]) for s in ("train", "eval_id", "eval_hard")] == [30, 10, 5]
    for q in splits["train"]:
        operands, operators = tokenize(q.question)
        assert len(operands) == 2 and max(operands) <= 99 and set(operators) <= {"+", "-"}


def test_parse_steps_round_trips_every_solution():
    rng = random.Random(0)
    for level in LEVELS.values():
        for _ in range(100):
            expression = random_expression(level, rng)
            assert parse_steps(solution_for(expression)) == steps_for(expression)


def test_parse_steps_reads_negatives_keeps_wrong_claims_and_skips_other_lines():
    text = " 3-8=-5\n-5+4=-2\nso the answer is\n-5 * 2 = -10\n#### -2"
    assert parse_steps(text) == [(3, "-", 8, -5), (-5, "+", 4, -2), (-5, "*", 2, -10)]
    assert parse_steps("#### 4") == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"operands": 1, "digits": 1, "operators": "+"}, "operands"),
        ({"operands": 2, "digits": 0, "operators": "+"}, "digits"),
        ({"operands": 2, "digits": 1, "operators": ""}, "operators"),
        ({"operands": 2, "digits": 1, "operators": "+/"}, "operators"),
    ],
)
def test_invalid_level_names_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        ArithLevel(**kwargs)
    assert info.value.field == field


def test_task_config_rejects_unknown_levels_and_negative_counts():
    with pytest.raises(ConfigError, match="unknown level 'expert'") as info:
        ArithTaskConfig(eval_hard={"expert": 10})
    assert info.value.field == "eval_hard"
    with pytest.raises(ConfigError) as info:
        ArithTaskConfig(train={"easy": -1})
    assert info.value.field == "train"


def test_hard_level_is_harder_than_the_pool():
    hard, easy = LEVELS["hard"], LEVELS["easy"]
    assert hard.operands > easy.operands and "*" in hard.operators


def test_fewshot_examples_are_seeded_and_can_avoid_evaluated_questions():
    shots = fewshot_examples(4, seed=0)
    assert len(shots) == 4 and shots == fewshot_examples(4, seed=0)
    assert all(q.id.startswith("fewshot-") for q in shots)
    # Their own seed stream: not the same draw as the questions of the same seed.
    assert [q.question for q in shots] != [
        q.question for q in generate_questions(LEVELS["easy"], 4, seed=0)
    ]
    evaluated = {q.question for q in make_splits()["eval_id"]}
    assert not {q.question for q in fewshot_examples(8, seed=0, exclude=evaluated)} & evaluated
    prompt = format_prompt("1+2", shots[:2])
    assert prompt.startswith(f"Question: {shots[0].question}\nAnswer: {shots[0].solution}\n\n")
