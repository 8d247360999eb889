"""Evaluation: accuracy with CIs on planted completions, pass@k, maj@k, paired comparisons."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pytest

from satk8s.errors import ConfigError, DataError
from satk8s.evaluation import (
    PER_QUESTION_SCHEMA,
    EvalConfig,
    bootstrap_ci,
    compare_runs,
    evaluate_model,
    maj_at_k,
    majority_answer,
    paired_bootstrap_diff,
    pass_at_k,
)
from satk8s.generation import Sample, SamplingConfig
from satk8s.tasks.base import Question, format_prompt


class PlantedBackend:
    """A generation backend whose completions are fixed in advance, per question.

    Greedy calls (temperature 0) return `greedy[qid]`; sampled calls return
    `sampled[qid][j]` for sample j. Every call is recorded.
    """

    model_id = "planted"

    def __init__(self, greedy: dict[str, str], sampled: dict[str, list[str]] | None = None):
        self.greedy, self.sampled = greedy, sampled or {}
        self.calls: list[SamplingConfig] = []

    def generate(
        self, prompts: Sequence[tuple[str, str]], sampling: SamplingConfig, seed: int
    ) -> list[Sample]:
        self.calls.append(sampling)
        out = []
        for qid, prompt in prompts:
            for j in range(sampling.n):
                text = self.greedy[qid] if sampling.temperature == 0 else self.sampled[qid][j]
                out.append(Sample(qid, j, prompt, text, [], [], "stop"))
        return out


def planted_set(n: int = 10, n_correct: int = 7) -> tuple[list[Question], list[str], dict]:
    """n questions "i + 1 = ?" whose first n_correct greedy answers are right, the rest off by one."""
    questions = [
        Question(f"q{i}", f"{i} + 1", str(i + 1), f" {i}+1={i + 1}\n#### {i + 1}") for i in range(n)
    ]
    prompts = [format_prompt(q.question) for q in questions]
    greedy = {
        q.id: f" {i}+1={i + 1 if i < n_correct else i + 2}\n#### "
        f"{i + 1 if i < n_correct else i + 2}"
        for i, q in enumerate(questions)
    }
    return questions, prompts, greedy


def test_accuracy_on_a_planted_set_is_exact_and_its_ci_brackets_it():
    questions, prompts, greedy = planted_set(10, 7)
    table, summary = evaluate_model(
        "planted",
        {"arith": (questions, prompts)},
        EvalConfig(n_boot=500),
        backend=PlantedBackend(greedy),
    )
    acc = summary["eval_sets"]["arith"]["accuracy"]
    assert acc["mean"] == 0.7
    assert 0.0 <= acc["lo"] < 0.7 < acc["hi"] <= 1.0
    assert summary["eval_sets"]["arith"]["n_questions"] == 10
    # lm-eval's strict match agrees here: every completion ends in "#### N".
    assert summary["eval_sets"]["arith"]["strict_match"]["mean"] == 0.7
    assert summary["eval_sets"]["arith"]["flexible_extract"]["mean"] == 0.7
    assert "pass_at_k" not in summary["eval_sets"]["arith"]


def test_per_question_rows_line_up_with_the_questions():
    questions, prompts, greedy = planted_set(10, 7)
    table, _ = evaluate_model(
        "planted",
        {"arith": (questions, prompts)},
        EvalConfig(n_boot=100),
        backend=PlantedBackend(greedy),
    )
    assert table.schema == PER_QUESTION_SCHEMA
    rows = table.to_pylist()
    assert [r["question_id"] for r in rows] == [q.id for q in questions]
    assert [r["correct"] for r in rows] == [True] * 7 + [False] * 3
    assert rows[8]["extracted_answer"] == "10"
    assert rows[8]["gold"] == "9" and rows[8]["prompt"] == prompts[8]
    assert rows[8]["completion"] == greedy["q8"]
    assert rows[0]["n_samples"] is None and rows[0]["sampled_answers"] is None


def test_greedy_decoding_is_requested_once_per_eval_set_and_limit_applies():
    questions, prompts, greedy = planted_set(10, 7)
    backend = PlantedBackend(greedy)
    table, summary = evaluate_model(
        "planted",
        {"easy": (questions, prompts), "hard": (questions, prompts)},
        EvalConfig(n_boot=100, limit=4, max_new_tokens=32),
        backend=backend,
    )
    assert [(c.n, c.temperature, c.max_new_tokens) for c in backend.calls] == [(1, 0.0, 32)] * 2
    assert table.column("eval_set").to_pylist() == ["easy"] * 4 + ["hard"] * 4
    assert summary["eval_sets"]["hard"]["accuracy"]["mean"] == 1.0


def test_pass_at_k_and_maj_at_k_are_computed_from_the_sampled_answers():
    questions, prompts, greedy = planted_set(2, 2)
    # q0: 2 of 5 samples right, but "7" wins the vote. q1: 3 of 5 right and the majority.
    sampled = {
        "q0": ["#### 7", "#### 1", "#### 7", "#### 1", "#### 7"],
        "q1": ["#### 2", "#### 2", "no answer", "#### 2", "#### 5"],
    }
    _, summary = evaluate_model(
        "planted",
        {"arith": (questions, prompts)},
        EvalConfig(n_boot=100, pass_k=[1.0, 5], samples_for_k=5),  # kfp.local sends floats
        backend=PlantedBackend(greedy, sampled),
    )
    result = summary["eval_sets"]["arith"]
    assert result["pass_at_k"]["1"]["mean"] == pytest.approx((0.4 + 0.6) / 2)
    assert result["pass_at_k"]["5"]["mean"] == 1.0
    assert result["maj_at_k"]["5"]["mean"] == 0.5
    assert summary["config"]["pass_k"] == [1, 5]


def test_pass_at_k_matches_the_closed_form():
    assert pass_at_k(5, 2, 1) == 0.4
    assert pass_at_k(5, 2, 5) == 1.0
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(4, 1, 2) == 0.5  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(10, 3, 4) == pytest.approx(1 - 35 / 210)
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(5, 2, 6)


def test_majority_vote_ignores_missing_answers_and_breaks_ties_by_first_appearance():
    assert majority_answer(["3", None, "4", "4", None, None], k=6) == "4"
    assert majority_answer(["3", "4", "4", "3"], k=4) == "3"  # tie: "3" came first
    assert majority_answer(["4", "3", "3", "4"], k=4) == "4"
    assert majority_answer(["3", "4", "4", "3"], k=1) == "3"
    assert majority_answer([None, None], k=2) is None
    assert majority_answer(["5", "18.00", "18"], k=3) == "18.00"  # votes by value
    assert maj_at_k(["5", "18.00", "18"], "18", k=3) == 1.0
    assert maj_at_k(["5", "5", "18"], "18", k=3) == 0.0
    assert maj_at_k([None], "18", k=1) == 0.0


def test_bootstrap_ci_is_seeded_and_collapses_on_constant_values():
    values = [1.0] * 7 + [0.0] * 3
    assert bootstrap_ci(values, n_boot=200, seed=3) == bootstrap_ci(values, n_boot=200, seed=3)
    mean, lo, hi = bootstrap_ci([1.0] * 5, n_boot=50)
    assert (mean, lo, hi) == (1.0, 1.0, 1.0)
    with pytest.raises(DataError, match="non-empty"):
        bootstrap_ci([])


def test_paired_bootstrap_of_identical_runs_is_exactly_zero():
    run = {f"q{i}": float(i % 3 == 0) for i in range(20)}
    diff = paired_bootstrap_diff(run, dict(reversed(run.items())), n_boot=200)
    assert (diff.diff, diff.lo, diff.hi) == (0.0, 0.0, 0.0)
    assert diff.p_le_zero == 1.0


def test_paired_bootstrap_sees_a_consistent_improvement():
    a = {f"q{i}": 1.0 for i in range(30)}
    b = {f"q{i}": float(i >= 15) for i in range(30)}
    diff = paired_bootstrap_diff(a, b, n_boot=300)
    assert diff.diff == 0.5 and 0.0 < diff.lo < 0.5 < diff.hi
    assert diff.p_le_zero == 0.0


def test_paired_bootstrap_refuses_different_question_sets():
    with pytest.raises(DataError, match=r"different questions.*\['q2'\]"):
        paired_bootstrap_diff({"q1": 1.0, "q2": 0.0}, {"q1": 1.0, "q3": 1.0})


def per_question(eval_set: str, correct: dict[str, bool]) -> pa.Table:
    rows = [{"eval_set": eval_set, "question_id": q, "correct": ok} for q, ok in correct.items()]
    return pa.Table.from_pylist(rows)


def test_compare_runs_gives_a_paired_difference_per_eval_set():
    a = pa.concat_tables(
        [
            per_question("easy", {"q1": True, "q2": True}),
            per_question("hard", {"q1": True, "q2": False}),
        ]
    )
    b = pa.concat_tables(
        [
            per_question("hard", {"q2": False, "q1": False}),
            per_question("easy", {"q1": True, "q2": True}),
        ]
    )
    result = compare_runs(a, b, n_boot=100)
    assert result["easy"]["diff"] == 0.0 and result["easy"]["n_questions"] == 2
    assert result["hard"]["diff"] == 0.5
    with pytest.raises(DataError, match="different eval sets"):
        compare_runs(a, per_question("easy", {"q1": True, "q2": True}))
    with pytest.raises(DataError, match="eval set 'easy'.*different questions"):
        compare_runs(per_question("easy", {"q1": True}), per_question("easy", {"q9": True}))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pass_k": [4]}, "pass_k"),  # more than samples_for_k=2
        ({"pass_k": [1], "temperature": 0.0}, "temperature"),
        ({"backend": "tgi"}, "backend"),
        ({"limit": 0}, "limit"),
    ],
)
def test_eval_config_names_the_bad_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        EvalConfig(samples_for_k=2, **kwargs)
    assert err.value.field == field


def test_greedy_eval_runs_through_the_hf_backend_on_a_tiny_random_model(tmp_path):
    from satk8s.tiny.model import new_model
    from satk8s.tiny.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    new_model(tokenizer, seed=0).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    questions, prompts, _ = planted_set(3, 0)
    table, summary = evaluate_model(
        str(tmp_path),
        {"arith": (questions, prompts)},
        EvalConfig(backend="hf", batch_size=4, max_new_tokens=6, n_boot=50),
    )
    assert table.column("question_id").to_pylist() == ["q0", "q1", "q2"]
    assert table.column("prompt").to_pylist() == prompts
    assert summary["model"] == str(tmp_path)
    assert 0.0 <= summary["eval_sets"]["arith"]["accuracy"]["mean"] <= 1.0


# maj@k over all n samples: the mean over size-k subsets, not the first k.


def _maj_reference(answers, gold, k):
    """Brute force, independent of satk8s: every size-k subset, a vote by canonical value
    (missing answers do not vote), a tie split evenly among the tied answers."""
    import itertools
    from collections import Counter
    from fractions import Fraction

    def value(a):
        return None if a is None else Fraction(a)

    total, count = 0.0, 0
    for subset in itertools.combinations(range(len(answers)), k):
        votes = Counter(value(answers[i]) for i in subset if answers[i] is not None)
        count += 1
        if not votes:
            continue
        top = max(votes.values())
        winners = [v for v, c in votes.items() if c == top]
        total += sum(v == Fraction(gold) for v in winners) / len(winners)
    return total / count


def test_maj_at_k_averages_over_every_size_k_subset_of_all_samples():
    # The first 3 samples are wrong; the other 5 right: maj@3 over the first 3 would be 0.
    answers = ["7", "7", "1", "2", "2", "2", "2", "2"]
    exact = _maj_reference(answers, "2", 3)
    assert maj_at_k(answers, "2", 3, max_subsets=10_000) == pytest.approx(exact, abs=1e-12)
    assert 0.6 < exact < 0.9
    with_ties = ["3", "4", "4", "3", None, "3"]
    for k in (1, 2, 4, 6):
        assert maj_at_k(with_ties, "3", k, max_subsets=10_000) == pytest.approx(
            _maj_reference(with_ties, "3", k), abs=1e-12
        )


def test_maj_at_k_samples_seeded_subsets_when_there_are_too_many():
    answers = ["2", "7", None, "2", "7", "7", "2", "2", "5", "2", "7", "2", "2", "1", "7", "2"]
    exact = _maj_reference(answers, "2", 4)  # C(16, 4) = 1820 subsets
    drawn = maj_at_k(answers, "2", 4, seed=3, max_subsets=500)
    assert drawn == maj_at_k(answers, "2", 4, seed=3, max_subsets=500)
    assert drawn != maj_at_k(answers, "2", 4, seed=4, max_subsets=500)
    assert drawn == pytest.approx(exact, abs=0.05)


# Multiplicity and several seeds.


def test_holm_adjustment_matches_a_hand_worked_example():
    from satk8s.evaluation.metrics import holm_adjust

    # Sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06,
    # adjusted p-values never decrease along the sorted order).
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjust([]) == []
    assert holm_adjust([0.02, None, 0.04]) == pytest.approx([0.04, None, 0.04])


def test_paired_bootstrap_gives_a_two_sided_p_value():
    run_a = {f"q{i}": 1.0 for i in range(20)}
    run_b = {f"q{i}": 0.0 if i < 12 else 1.0 for i in range(20)}
    diff = paired_bootstrap_diff(run_a, run_b, n_boot=400)
    assert diff.p_two_sided == 0.0
    same = paired_bootstrap_diff(run_a, run_a, n_boot=50)
    assert same.p_two_sided == 1.0


def test_hierarchical_bootstrap_resamples_seeds_and_questions():
    import numpy as np
    from scipy.stats import bootstrap

    from satk8s.evaluation.metrics import hierarchical_bootstrap_diff

    questions = [f"q{i}" for i in range(40)]
    rng = np.random.default_rng(0)
    # Seeds differ a lot; questions within a seed not at all: the CI is the seeds' CI.
    offsets = [0.1, 0.5, 0.2, 0.6, 0.3]
    a = {s: {q: offsets[s] for q in questions} for s in range(5)}
    b = {q: 0.0 for q in questions}
    diff = hierarchical_bootstrap_diff(a, {s: b for s in range(5)}, n_boot=4000, seed=1)
    assert diff.diff == pytest.approx(np.mean(offsets))
    reference = bootstrap(
        (np.asarray(offsets),), np.mean, n_resamples=4000, method="percentile", random_state=rng
    ).confidence_interval
    assert diff.lo == pytest.approx(reference.low, abs=0.03)
    assert diff.hi == pytest.approx(reference.high, abs=0.03)
    # With one seed it is the question bootstrap.
    one = hierarchical_bootstrap_diff({0: a[0]}, {0: b}, n_boot=100)
    assert (one.lo, one.hi) == (offsets[0], offsets[0])
