"""The pairwise protocol: pair planning, both-order judging, diagnostics, Bradley-Terry."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence

import pyarrow as pa
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from satk8s.errors import ConfigError, DataError
from satk8s.signals.pairwise import (
    DEFAULT_TEMPLATE,
    PAIRS_SCHEMA,
    JudgeTemplate,
    PairJudge,
    PairRequest,
    Verdict,
    bradley_terry,
    check_single_token_labels,
    judge_both_orders,
    pair_diagnostics,
    pairwise_scores,
    plan_pairs,
    question_from_prompt,
    win_rate,
)
from satk8s.signals.schema import SCORES_SCHEMA
from satk8s.signals.self_judge import SelfJudgeConfig
from satk8s.tiny.tokenizer import build_tokenizer


def kept_table(solutions: dict[str, list[str]]) -> pa.Table:
    """A kept table with the columns the judges read; completions start with a space."""
    rows = [
        {
            "question_id": qid,
            "sample_index": k,
            "prompt": f"Question: what is {qid}?\nAnswer:",
            "completion": text,
        }
        for qid, texts in solutions.items()
        for k, text in enumerate(texts)
    ]
    schema = pa.schema(
        [
            ("question_id", pa.string()),
            ("sample_index", pa.int32()),
            ("prompt", pa.string()),
            ("completion", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


class StrengthJudge:
    """A fake judge that reads each solution's true strength from its text (" s=2.0") and
    answers the Bradley-Terry probability, plus `first_bonus` for whichever is shown first."""

    name = "fake"

    def __init__(self, first_bonus: float = 0.0, invalid: set[tuple[int, int]] = frozenset()):
        self.first_bonus = first_bonus
        self.invalid = invalid  # (first_index, second_index) orders that get no usable answer
        self.calls: list[PairRequest] = []

    def judge(self, requests: Sequence[PairRequest]) -> list[Verdict]:
        self.calls.extend(requests)
        out = []
        for r in requests:
            if (r.first_index, r.second_index) in self.invalid:
                out.append(Verdict(None, "invalid"))
                continue
            a, b = (
                float(re.search(r"s=([\d.]+)", t).group(1)) for t in (r.first_text, r.second_text)
            )
            out.append(Verdict(a / (a + b) + self.first_bonus, "logprobs"))
        return out


def test_fake_judge_satisfies_the_protocol():
    assert isinstance(StrengthJudge(), PairJudge)


def test_bradley_terry_recovers_known_strengths_from_exact_preferences():
    strengths = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    comparisons = [
        (i, j, strengths[i] / (strengths[i] + strengths[j]))
        for i in range(6)
        for j in range(i + 1, 6)
    ]
    fitted = bradley_terry(comparisons, prior=1e-6)
    for i in range(1, 6):
        assert math.log(fitted[i] / fitted[0]) == pytest.approx(
            math.log(strengths[i] / strengths[0]), abs=1e-3
        )
    # The default prior shrinks towards 1 but keeps the ordering.
    shrunk = bradley_terry(comparisons)
    assert sorted(shrunk, key=shrunk.get) == [0, 1, 2, 3, 4, 5]


def test_bradley_terry_keeps_an_undefeated_solution_finite():
    fitted = bradley_terry([(0, 1, 1.0), (0, 2, 1.0), (1, 2, 0.5)])
    assert math.isfinite(fitted[0]) and fitted[0] > fitted[1] == pytest.approx(fitted[2])


def test_win_rate_is_the_mean_soft_win():
    assert win_rate([(0, 1, 0.8), (0, 2, 0.6), (1, 2, 0.5)]) == pytest.approx(
        {0: 0.7, 1: 0.35, 2: 0.45}
    )


def test_averaging_both_orders_cancels_a_planted_first_position_bias():
    strengths = [1.0, 1.5, 2.0]  # every true P lies in [1/3, 2/3], so +0.3 never clips
    kept = kept_table({"q": [f" s={s}" for s in strengths]})
    pairs = judge_both_orders(kept, StrengthJudge(first_bonus=0.3), SelfJudgeConfig())
    assert pairs.schema == PAIRS_SCHEMA and pairs.num_rows == 3
    for row in pairs.to_pylist():
        true = strengths[row["i"]] / (strengths[row["i"]] + strengths[row["j"]])
        assert row["p_ij_first"] == pytest.approx(true + 0.3)  # i shown first: pushed up
        assert row["p_ij_second"] == pytest.approx(true - 0.3)  # j shown first: pushed down
        assert row["p_ij"] == pytest.approx(true)
    diagnostics = pair_diagnostics(pairs)
    assert diagnostics["position_bias"] == 1.0  # the first shown always wins
    assert diagnostics["order_consistency"] == 0.0  # so the two orders never agree
    assert diagnostics["invalid"] == 0

    scores = pairwise_scores(pairs, "fake")
    ranked = sorted(scores.to_pylist(), key=lambda r: r["score"])
    assert [r["sample_index"] for r in ranked] == [0, 1, 2]


def test_an_unbiased_judge_is_order_consistent():
    kept = kept_table({"q": [" s=1.0", " s=3.0", " s=2.0"]})
    diagnostics = pair_diagnostics(judge_both_orders(kept, StrengthJudge(), SelfJudgeConfig()))
    assert diagnostics["order_consistency"] == 1.0
    assert diagnostics["position_bias"] == 0.5


def test_invalid_verdicts_are_counted_and_excluded_not_made_ties():
    kept = kept_table({"q": [" s=1.0", " s=2.0", " s=4.0"]})
    judge = StrengthJudge(invalid={(2, 0)})  # pair (0, 2) with solution 2 shown first
    pairs = judge_both_orders(kept, judge, SelfJudgeConfig())
    broken = next(r for r in pairs.to_pylist() if (r["i"], r["j"]) == (0, 2))
    assert broken["p_ij_first"] == pytest.approx(1 / 5)
    assert broken["p_ij_second"] is None and broken["p_ij"] is None
    assert broken["method"] == "invalid"
    assert pair_diagnostics(pairs)["invalid"] == 1

    details = {
        r["sample_index"]: json.loads(r["details"]) for r in pairwise_scores(pairs, "x").to_pylist()
    }
    assert details[0]["n_comparisons"] == 1 and details[2]["n_comparisons"] == 1
    assert details[1]["n_comparisons"] == 2


def test_every_pair_is_asked_in_both_orders_with_the_question_text():
    kept = kept_table({"q1": [" s=1.0", " s=2.0"], "q2": [" s=1.0", " s=2.0", " s=3.0"]})
    judge = StrengthJudge()
    judge_both_orders(kept, judge, SelfJudgeConfig())
    orders = Counter((r.question_id, r.first_index, r.second_index) for r in judge.calls)
    assert len(orders) == 2 * (1 + 3) and set(orders.values()) == {1}
    assert {r.question for r in judge.calls} == {"what is q1?", "what is q2?"}


def test_pairwise_scores_gives_unjudged_solutions_a_neutral_score():
    kept = kept_table({"a": [" s=1.0", " s=2.0"], "b": [" s=1.0"]})
    pairs = judge_both_orders(kept, StrengthJudge(), SelfJudgeConfig())
    for aggregate, neutral in [("bradley_terry", 0.0), ("win_rate", 0.5)]:
        scores = pairwise_scores(pairs, "x", aggregate, solutions={"a": [0, 1], "b": [0]})
        assert scores.schema == SCORES_SCHEMA
        rows = {(r["question_id"], r["sample_index"]): r for r in scores.to_pylist()}
        assert rows[("b", 0)]["score"] == neutral
        assert json.loads(rows[("b", 0)]["details"]) == {"n_comparisons": 0}
        judged = json.loads(rows[("a", 1)]["details"])
        assert judged["win_rate"] == pytest.approx(2 / 3) and judged["n_comparisons"] == 1
    bt = pairwise_scores(pairs, "x", "bradley_terry").to_pylist()
    assert bt[1]["score"] == pytest.approx(json.loads(bt[1]["details"])["bt"])
    assert bt[1]["raw_score"] == pytest.approx(math.exp(bt[1]["score"]))


def test_plan_pairs_takes_all_pairs_for_small_n():
    assert plan_pairs(4, max_all_pairs_n=8, budget=2, seed=0) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
        (2, 3),
    ]
    assert plan_pairs(1, 8, 2, 0) == [] and plan_pairs(0, 8, 2, 0) == []


def test_plan_pairs_samples_a_seeded_budget_that_covers_every_solution():
    pairs = plan_pairs(16, max_all_pairs_n=8, budget=12, seed=3)
    assert len(pairs) == 12 == len(set(pairs))
    assert all(0 <= i < j < 16 for i, j in pairs)
    assert {s for p in pairs for s in p} == set(range(16))
    assert plan_pairs(16, 8, 12, seed=3) == pairs
    assert plan_pairs(16, 8, 12, seed=4) != pairs
    # Odd n: the odd one out is still covered.
    assert {s for p in plan_pairs(9, 4, 5, seed=1) for s in p} == set(range(9))
    # A budget below n/2 cannot cover everyone but is still honoured; above n(n-1)/2, all.
    assert len(plan_pairs(16, 8, 3, seed=0)) == 3
    assert len(plan_pairs(10, 8, 1000, seed=0)) == 45


def test_question_text_comes_from_the_last_block_of_the_prompt():
    prompt = "Question: 1 + 1 = ?\nAnswer: 2 #### 2\n\nQuestion: 7 - 3 = ?\nAnswer:"
    assert question_from_prompt(prompt) == "7 - 3 = ?"
    with pytest.raises(DataError):
        question_from_prompt("Compute 7 - 3.")


def test_character_labels_follow_the_templates_trailing_space():
    tokenizer = build_tokenizer()
    labels = check_single_token_labels(tokenizer, DEFAULT_TEMPLATE, ("A", "B"))
    assert not labels.strip_trailing_space
    assert labels.ids == tuple(tokenizer.convert_tokens_to_ids(["A", "B"]))


def test_word_piece_labels_carry_the_space():
    """A byte-level BPE (like Qwen's) writes " A" as one token: the space moves into it."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(alphabet))}
    vocab.update({"ĠA": len(vocab), "ĠB": len(vocab) + 1})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[("Ġ", "A"), ("Ġ", "B")]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
    labels = check_single_token_labels(tokenizer, DEFAULT_TEMPLATE, ("A", "B"))
    assert labels.strip_trailing_space
    assert labels.ids == (vocab["ĠA"], vocab["ĠB"])
    assert labels.prompt("... is ") == "... is"


def test_a_multi_token_label_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError, match="label 'XY' is 2 tokens") as err:
        check_single_token_labels(build_tokenizer(), DEFAULT_TEMPLATE, ("XY", "B"))
    assert err.value.field == "judge.labels"


def test_judge_template_checks_fields_and_labels():
    with pytest.raises(ConfigError) as err:
        JudgeTemplate(template="Is {first} better than {second}?")
    assert err.value.field == "judge.template"
    with pytest.raises(ConfigError) as err:
        JudgeTemplate(labels=("A", "A"))
    assert err.value.field == "judge.labels"
    with pytest.raises(ConfigError, match="literal brace") as err:
        JudgeTemplate(template="{question} {first} {second} {verdict}")
    assert err.value.field == "judge.template"


# Ties must stay ties: two solutions with identical games get the same strength to the bit.


def _twin_games(ps: Sequence[float]) -> list[tuple[int, int, float]]:
    """Solutions 0 and 1 tie each other and play 2..5 with the same soft wins, listed in a
    different order (as a question's pairs come out of the planner)."""
    others = list(range(2, 2 + len(ps)))
    games = [(0, 1, 0.5)]
    games += [(0, o, p) for o, p in zip(others, ps, strict=True)]
    games += [(1, o, p) for o, p in reversed(list(zip(others, ps, strict=True)))]
    return games + [(2, 3, 0.511), (4, 5, 0.405)]


def test_bradley_terry_gives_solutions_with_identical_games_identical_strengths():
    games = _twin_games([0.844, 0.758, 0.421, 0.259, 0.511, 0.405])
    strength = bradley_terry(games)
    assert strength[0] == strength[1]
    scores = pairwise_scores(
        pa.Table.from_pylist(
            [{"question_id": "q", "i": i, "j": j, "p_ij": p} for i, j, p in games],
            schema=pa.schema(
                [
                    ("question_id", pa.string()),
                    ("i", pa.int32()),
                    ("j", pa.int32()),
                    ("p_ij", pa.float64()),
                ]
            ),
        ),
        "self_judge",
    ).to_pylist()
    assert scores[0]["score"] == scores[1]["score"]


def test_identical_texts_are_ties_by_definition_and_never_reach_the_judge():
    kept = kept_table({"q": [" 1+1=2 s=1.0", " 1+1=2 s=1.0", " 2 s=3.0"]})
    judge = StrengthJudge(first_bonus=0.3)
    pairs = judge_both_orders(kept, judge, SelfJudgeConfig())
    assert all(r.first_text != r.second_text for r in judge.calls)
    # Pairs (0, 2) and (1, 2) show the same texts: asked once, in both orders.
    assert len(judge.calls) == 2
    row = next(r for r in pairs.to_pylist() if (r["i"], r["j"]) == (0, 1))
    assert row["method"] == "identical" and row["p_ij"] == 0.5
    assert row["p_ij_first"] is None and row["p_ij_second"] is None
    scores = {r["sample_index"]: r["score"] for r in pairwise_scores(pairs, "s").to_pylist()}
    assert scores[0] == scores[1]


def test_position_bias_and_consistency_are_measured_on_distinct_pairs_only():
    # Three copies of one text and one other text: 3 identical pairs, 3 distinct ones. An
    # unbiased, exact judge: identical pairs must not drag consistency to 0 nor move the bias.
    kept = kept_table({"q": [" a s=1.0", " a s=1.0", " a s=1.0", " b s=4.0"]})
    diagnostics = pair_diagnostics(judge_both_orders(kept, StrengthJudge(), SelfJudgeConfig()))
    assert diagnostics["pairs"] == 6
    assert diagnostics["identical_pairs"] == 3 and diagnostics["distinct_pairs"] == 3
    assert diagnostics["verdicts"] == 6 and diagnostics["invalid"] == 0
    assert diagnostics["invalid_share"] == 0.0
    assert diagnostics["order_consistency"] == 1.0
    assert diagnostics["consistency_pairs"] == 3
    assert diagnostics["position_bias"] == 0.5


def test_all_identical_pairs_leave_position_bias_unmeasured_not_perfect_or_zero():
    kept = kept_table({"q": [" a s=1.0", " a s=1.0"]})
    diagnostics = pair_diagnostics(judge_both_orders(kept, StrengthJudge(0.4), SelfJudgeConfig()))
    assert diagnostics["distinct_pairs"] == 0
    assert diagnostics["position_bias"] is None and diagnostics["order_consistency"] is None
