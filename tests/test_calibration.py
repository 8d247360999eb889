"""Calibration: how well each signal's within-question preferences match the external judge's."""

from __future__ import annotations

import json
import math
import random

import pytest

from satk8s.calibration import calibrate, calibration_markdown
from satk8s.errors import ConfigError, DataError
from satk8s.signals.schema import ScoreRow, scores_table


def scores(signal: str, by_question: dict[str, list[float]]):
    """A SCORES_SCHEMA table: by_question[qid][k] is the score of sample k."""
    return scores_table(
        [
            ScoreRow(qid, k, signal, s, s)
            for qid, values in by_question.items()
            for k, s in enumerate(values)
        ]
    )


def noisy_values(n_questions: int = 30, n_solutions: int = 6, noise: float = 1.0, seed: int = 0):
    """Judge scores, and signal scores = judge scores + Gaussian noise."""
    rng = random.Random(seed)
    truth = {f"q{q}": [rng.gauss(0, 1) for _ in range(n_solutions)] for q in range(n_questions)}
    signal = {q: [v + rng.gauss(0, noise) for v in vs] for q, vs in truth.items()}
    return signal, truth


def noisy_case(**kwargs):
    signal, truth = noisy_values(**kwargs)
    return scores("entropy", signal), scores("external_judge", truth)


def test_identical_scores_agree_perfectly():
    _, truth = noisy_values()

    summary = calibrate({"same": scores("same", truth)}, scores("judge", truth), n_boot=200)
    entry = summary["signals"]["same"]

    assert entry["n_pairs"] == 30 * 15 and summary["counts"]["same"]["n_compared"] == 30 * 15
    assert entry["pairwise_agreement"] == {"mean": 1.0, "lo": 1.0, "hi": 1.0}
    assert entry["cohen_kappa"] == {"mean": 1.0, "lo": 1.0, "hi": 1.0}
    assert entry["kendall_tau"] == pytest.approx({"mean": 1.0, "lo": 1.0, "hi": 1.0})


def test_kappa_is_one_when_both_sides_always_prefer_the_same_position():
    # Chance agreement is 1 here, so kappa is 0/0: reported as the perfect agreement it is.
    ranked = {"q1": [3, 2, 1], "q2": [9, 5, 0]}

    entry = calibrate({"s": scores("s", ranked)}, scores("j", ranked), n_boot=50)["signals"]["s"]

    assert entry["pairwise_agreement"]["mean"] == 1.0
    assert entry["cohen_kappa"] == {"mean": 1.0, "lo": 1.0, "hi": 1.0}


def test_reversed_scores_disagree_on_every_pair():
    _, truth = noisy_values()
    reversed_ = {q: [-v for v in vs] for q, vs in truth.items()}

    summary = calibrate({"reversed": scores("r", reversed_)}, scores("judge", truth), n_boot=200)
    entry = summary["signals"]["reversed"]

    assert entry["pairwise_agreement"] == {"mean": 0.0, "lo": 0.0, "hi": 0.0}
    assert entry["kendall_tau"]["mean"] == pytest.approx(-1.0)
    assert entry["cohen_kappa"]["mean"] < 0


def test_a_small_case_matches_hand_computed_values():
    # q1: the signal ranks 0 < 1 < 2, the judge 0 < 2 < 1: pairs (0,1), (0,2) agree, (1,2) not.
    # q2: the signal ties 0 and 1 (excluded) and prefers both over 2; the judge prefers 2.
    signal = scores("s", {"q1": [1, 2, 3], "q2": [5, 5, 1]})
    judge = scores("judge", {"q1": [1, 3, 2], "q2": [0, 1, 2]})

    summary = calibrate({"s": signal}, judge, n_boot=100)
    entry, counts = summary["signals"]["s"], summary["counts"]["s"]

    assert summary["reference"] == "judge"
    assert (counts["n_questions"], counts["n_pairs"], counts["n_compared"]) == (2, 6, 5)
    assert (counts["n_ties_signal"], counts["n_ties_judge"]) == (1, 0)
    assert entry["pairwise_agreement"]["mean"] == pytest.approx(2 / 5)
    # Preferring the first (lower-index) solution: signal 2 of 5, judge 1 of 5, both 0 of 5.
    # Chance agreement 2/5*1/5 + 3/5*4/5 = 14/25; kappa = (10/25 - 14/25) / (11/25).
    assert entry["cohen_kappa"]["mean"] == pytest.approx(-4 / 11)
    # tau-b: q1 has 2 concordant and 1 discordant pair of 3; q2 0 and 2, with one tie in x.
    assert entry["kendall_tau"]["mean"] == pytest.approx((1 / 3 - 2 / math.sqrt(6)) / 2)
    assert counts["n_tau_questions"] == 2


def test_bootstrap_cis_contain_the_estimate_and_are_seeded():
    signal, judge = noisy_case(n_questions=40)

    first = calibrate({"entropy": signal}, judge, seed=3, n_boot=300)
    again = calibrate({"entropy": signal}, judge, seed=3, n_boot=300)
    other = calibrate({"entropy": signal}, judge, seed=4, n_boot=300)

    entry = first["signals"]["entropy"]
    for key in ("pairwise_agreement", "cohen_kappa", "kendall_tau"):
        assert entry[key]["lo"] < entry[key]["mean"] < entry[key]["hi"], key
    assert 0.55 < entry["pairwise_agreement"]["mean"] < 0.95  # noisy but informative
    assert first == again
    assert other["signals"]["entropy"]["pairwise_agreement"] != entry["pairwise_agreement"]
    assert first["n_boot"] == 300


def test_no_overlap_gives_zero_pairs_and_null_metrics_never_zero():
    signal = scores("entropy", {"q1": [0.1, 0.2, 0.3]})
    judge = scores("external_judge", {"q2": [0.1, 0.2, 0.3]})

    summary = calibrate({"entropy": signal}, judge, n_boot=50)
    entry = summary["signals"]["entropy"]

    assert entry == {
        "pairwise_agreement": None,
        "cohen_kappa": None,
        "kendall_tau": None,
        "n_pairs": 0,
    }
    why = "n/a (no question has two solutions scored by both the signal and the judge)"
    assert f"| entropy | 0 | {why} | {why} | {why} |" in calibration_markdown(summary)


def test_a_judge_that_ties_every_pair_says_so_in_every_n_a():
    """An endpoint whose verdicts are all invalid scores every solution the same."""
    signal = scores("entropy", {"q1": [0.1, 0.2, 0.3], "q2": [0.5, 0.4]})
    judge = scores("external_judge", {"q1": [0.0, 0.0, 0.0], "q2": [0.0, 0.0]})

    markdown = calibration_markdown(calibrate({"entropy": signal}, judge, n_boot=50))

    row = next(line for line in markdown.splitlines() if line.startswith("| entropy"))
    assert row.count("n/a (") == 3
    assert "n/a (the judge ties all 4 pairs; are its verdicts usable?)" in row
    assert "n/a (no question has distinct scores on both sides)" in row


def test_questions_without_a_tau_are_excluded_and_counted():
    signal = scores("s", {"q1": [1, 2, 3], "q2": [4, 4, 4], "q3": [1.0], "q4": [1, float("nan")]})
    judge = scores("judge", {"q1": [1, 2, 3], "q2": [1, 2, 3], "q3": [2.0], "q4": [1, 2]})

    summary = calibrate({"s": signal}, judge, n_boot=50)
    entry, counts = summary["signals"]["s"], summary["counts"]["s"]

    # q2: constant signal; q3 and q4 (its nan score dropped): one solution scored by both.
    assert counts["tau_excluded"] == {"fewer_than_2_solutions": 2, "constant_scores": 1}
    assert counts["n_tau_questions"] == 1 and entry["kendall_tau"]["mean"] == 1.0
    assert counts["missing_scores"] == 1
    assert (counts["n_pairs"], counts["n_compared"], counts["n_ties_signal"]) == (6, 3, 3)
    assert entry["pairwise_agreement"]["mean"] == 1.0


def test_summary_is_json_and_renders_as_a_markdown_table():
    signal, judge = noisy_case(n_questions=10)
    diagnostics = {
        "pairs": 150,
        "position_bias": 0.61,
        "order_consistency": 0.8,
        "mean_label_mass": None,
    }

    summary = calibrate(
        {"entropy": signal, "random": scores("random", {"q0": [0.3, 0.1]})},
        judge,
        self_judge_diagnostics=diagnostics,
        n_boot=100,
    )
    text = calibration_markdown(summary)

    assert json.loads(json.dumps(summary)) == summary
    assert summary["self_judge"] == diagnostics
    lines = text.splitlines()
    assert (
        "| signal | pairs | agreement [95% CI] | kappa [95% CI] | Kendall tau [95% CI] |" in lines
    )
    assert any(line.startswith("| entropy | 150 | ") for line in lines)
    assert any(line.startswith("| random | 1 | ") for line in lines)
    assert "position bias 0.610" in text and "order consistency 0.800" in text


def test_a_solution_scored_twice_is_an_error():
    judge = scores("judge", {"q1": [1, 2]})
    doubled = scores_table([ScoreRow("q1", 0, "s", 1, 1), ScoreRow("q1", 0, "s", 2, 2)])
    with pytest.raises(DataError, match="scored twice"):
        calibrate({"s": doubled}, judge)
    with pytest.raises(ConfigError, match="n_boot"):
        calibrate({"s": judge}, judge, n_boot=0)
