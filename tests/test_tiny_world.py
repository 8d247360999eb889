"""The tiny model's world: three correct styles, the planted carry error, the judge's labels."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from satk8s.signals.oracle import oracle_p_first, oracle_step_accuracy
from satk8s.signals.pairwise import JudgeTemplate
from satk8s.tasks.arith import LEVELS, evaluate, random_expression
from satk8s.tiny.build import judge_batch, sample_batch
from satk8s.tiny.config import TinyBuildConfig
from satk8s.tiny.tokenizer import build_tokenizer
from satk8s.tiny.world import (
    STYLES,
    Judged,
    bare_value,
    candidate,
    is_correct,
    preference,
    solution,
    style_of,
)


def test_shown_work_adds_two_digit_numbers_by_columns_with_a_carry_line():
    rng = random.Random(0)
    assert solution("47+38", "shown", rng) == "Work:\n7+8=15\n4+3=7\n7+1=8\n#### 85"
    assert solution("41+38", "shown", rng) == "Work:\n1+8=9\n4+3=7\n#### 79"
    assert solution("67+58", "shown", rng) == "Work:\n7+8=15\n6+5=11\n11+1=12\n#### 125"
    assert solution("7+38", "shown", rng) == "Work:\n7+8=15\n0+3=3\n3+1=4\n#### 45"
    assert solution("3-8", "shown", rng) == "Work:\n3-8=-5\n#### -5"


def test_every_shown_line_is_right_by_the_oracle():
    rng = random.Random(1)
    for name in ("easy", "add2"):
        for _ in range(300):
            expression = random_expression(LEVELS[name], rng)
            text = solution(expression, "shown", rng)
            right, total = oracle_step_accuracy(text)
            assert right == total >= 1, text
            assert is_correct(text, str(evaluate(expression)))


def test_bare_and_filler_answers_drop_the_carry_of_two_digit_sums_only():
    rng = random.Random(2)
    assert bare_value("47+38") == 75 and bare_value("67+58") == 115
    assert bare_value("41+38") == 79 == evaluate("41+38")
    assert solution("47+38", "bare", rng) == "#### 75"
    assert solution("47+38", "filler", rng).endswith("\n#### 75")
    for _ in range(300):  # one-digit questions: every style is right
        expression = random_expression(LEVELS["easy"], rng)
        for style in STYLES:
            assert is_correct(solution(expression, style, rng), str(evaluate(expression)))


def test_filler_is_the_longest_style_and_the_oracle_ranks_shown_bare_filler():
    rng = random.Random(3)
    for _ in range(200):
        expression = random_expression(LEVELS["easy"], rng)
        shown, bare, filler = (solution(expression, s, rng) for s in STYLES)
        assert len(filler) > len(shown) > len(bare)
        assert oracle_p_first(shown, bare) == 1.0
        assert oracle_p_first(bare, filler) == 1.0


@pytest.mark.parametrize("style", STYLES)
def test_style_of_reads_back_each_style(style):
    rng = random.Random(4)
    for name in ("easy", "add2"):
        for _ in range(50):
            text = " " + solution(random_expression(LEVELS[name], rng), style, rng)
            assert style_of(text) == style
    assert style_of(" 7") == "other"


def test_preference_ranks_right_over_wrong_then_shown_bare_filler_and_ties_identical():
    shown = Judged("7+8=15\n#### 15", "shown", True)
    bare = Judged("#### 15", "bare", True)
    filler = Judged("so well now\n#### 15", "filler", True)
    wrong_shown = Judged("7+8=14\n#### 14", "shown", False)
    other_filler = Judged("hmm yes so\n#### 15", "filler", True)
    assert preference(shown, bare) == preference(bare, filler) == 1.0
    assert preference(filler, shown) == 0.0
    assert preference(bare, wrong_shown) == 1.0
    assert preference(bare, bare) == preference(filler, other_filler) == 0.5
    everything = [shown, bare, filler, wrong_shown, other_filler]
    for a in everything:
        for b in everything:
            assert preference(a, b) + preference(b, a) == 1.0


def test_candidates_of_a_two_digit_carry_are_right_only_when_shown():
    rng = random.Random(5)
    shares = {"shown": 1.0, "bare": 1.0, "filler": 1.0}
    seen = {candidate("47+38", shares, rng) for _ in range(60)}
    assert {(c.style, c.correct) for c in seen} == {
        ("shown", True),
        ("bare", False),
        ("filler", False),
    }


def test_training_batches_follow_the_style_shares():
    tokenizer = build_tokenizer()
    config = TinyBuildConfig()
    batch = sample_batch(random.Random(6), tokenizer, 2000, {"easy": 1.0}, config.styles)
    texts = [
        tokenizer.decode(ids[labels != -100][:-1])
        for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True)
    ]
    counts = Counter(style_of(t) for t in texts)
    for style, share in config.styles["easy"].items():
        assert abs(counts[style] / len(texts) - share) < 0.04, counts


def test_judge_batches_are_balanced_and_label_identical_pairs_as_ties():
    tokenizer = build_tokenizer()
    config = TinyBuildConfig()
    template = JudgeTemplate()
    batch = judge_batch(random.Random(7), tokenizer, 3000, config.mix, config.styles, template)
    targets = batch["target"].tolist()
    wins, losses, ties = (targets.count(v) for v in (1.0, 0.0, 0.5))
    assert wins + losses + ties == len(targets)
    assert abs(wins - losses) < 0.1 * (wins + losses)  # the better one is shown first half the time
    assert ties > 0.2 * len(targets)
    prompts = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    identical = 0
    for prompt, target, last in zip(prompts, targets, batch["last"].tolist(), strict=True):
        assert prompt.endswith("Which solution is better, A or B? The better solution is ")
        first = prompt.split("Solution A:")[1].split("\n\nSolution B:")[0]
        second = prompt.split("Solution B:")[1].split("\n\nWhich")[0]
        if first == second:
            identical += 1
            assert target == 0.5
        assert last == len(tokenizer(prompt)["input_ids"]) - 1
    assert identical > 0.1 * len(targets)
    assert batch["labels"].tolist() == [tokenizer.convert_tokens_to_ids(c) for c in "AB"]
