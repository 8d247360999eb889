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

    assert {k: entry[k] for k in ("pairwise_agreement", "cohen_kappa", "kendall_tau")} == {
        "pairwise_agreement": None,
        "cohen_kappa": None,
        "kendall_tau": None,
    }
    assert entry["n_pairs"] == 0
    why = "n/a (no question has two solutions scored by both the signal and the judge)"
    assert f"| entropy | 0 | 0 | 0 | {why} | {why} | {why} |" in calibration_markdown(summary)


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
        {
            "self_judge": signal,
            "entropy": signal,
            "random": scores("random", {"q0": [0.3, 0.1]}),
        },
        judge,
        health={"self_judge": diagnostics},
        n_boot=100,
    )
    text = calibration_markdown(summary)

    assert json.loads(json.dumps(summary)) == summary
    assert summary["signals"]["self_judge"]["position_bias"] == 0.61
    lines = text.splitlines()
    assert (
        "| signal | pairs | judge ties | signal ties | agreement [95% CI] | kappa [95% CI] "
        "| Kendall tau* [95% CI] | label mass | position bias | consistency |"
    ) in lines
    assert any(line.startswith("| entropy | 150 | 0 | 0 | ") for line in lines)
    assert any(line.startswith("| random (control) | 1 | ") for line in lines)
    assert any(
        line.startswith("| self_judge |") and "| — | 0.610 | 0.800 |" in line for line in lines
    )
    # Controls come last, in their fixed order.
    assert lines.index(next(x for x in lines if x.startswith("| random"))) > lines.index(
        next(x for x in lines if x.startswith("| entropy"))
    )


def test_a_solution_scored_twice_is_an_error():
    judge = scores("judge", {"q1": [1, 2]})
    doubled = scores_table([ScoreRow("q1", 0, "s", 1, 1), ScoreRow("q1", 0, "s", 2, 2)])
    with pytest.raises(DataError, match="scored twice"):
        calibrate({"s": doubled}, judge)
    with pytest.raises(ConfigError, match="n_boot"):
        calibrate({"s": judge}, judge, n_boot=0)


# Against the judge's own verdicts (pairs.parquet), with ties decided by tolerance.


def judge_pairs(rows: list[tuple[str, int, int, float | None, str]]):
    """A PAIRS_SCHEMA table from (question_id, i, j, p_ij, method)."""
    import pyarrow as pa

    from satk8s.signals.pairwise import PAIRS_SCHEMA

    return pa.Table.from_pylist(
        [
            {
                "question_id": q,
                "i": i,
                "j": j,
                "p_ij_first": p if method not in ("identical",) else None,
                "p_ij_second": p if method not in ("identical",) else None,
                "p_ij": p,
                "method": method,
                "label_mass": None,
            }
            for q, i, j, p, method in rows
        ],
        schema=PAIRS_SCHEMA,
    )


def test_judge_ties_are_the_judges_verdicts_and_the_same_for_every_signal():
    # Solutions 0 and 1 have identical texts: the judge ties them (p = 0.5), but their fitted
    # strengths differ in the last bits, as a refit in another order gives.
    verdicts = judge_pairs(
        [
            ("q", 0, 1, 0.5, "identical"),
            ("q", 0, 2, 0.9, "logprobs"),
            ("q", 1, 2, 0.9, "logprobs"),
        ]
    )
    judge = scores("external_judge", {"q": [0.7, 0.7 + 1e-15, -1.4]})
    signals = {
        "entropy": scores("entropy", {"q": [-0.2, -0.2 + 2e-16, -0.9]}),
        "random": scores("random", {"q": [0.1, 0.8, 0.5]}),
    }
    summary = calibrate(signals, judge, judge_pairs=verdicts, n_boot=50)

    assert summary["judge"]["basis"] == "verdicts"
    for name in signals:
        assert summary["counts"][name]["n_ties_judge"] == 1, name
        assert summary["signals"][name]["n_judge_ties"] == 1, name
    # Entropy's last-bit difference is a tie, not a preference that happens to agree.
    assert summary["counts"]["entropy"]["n_ties_signal"] == 1
    assert summary["counts"]["entropy"]["n_compared"] == 2
    assert summary["signals"]["entropy"]["pairwise_agreement"]["mean"] == 1.0
    # The random control has no ties: of its 2 compared pairs, (1, 2) agrees and (0, 2) not.
    assert summary["counts"]["random"]["n_compared"] == 2
    assert summary["signals"]["random"]["pairwise_agreement"]["mean"] == 0.5
    # Without the verdicts, the judge's scores decide: their last-bit difference is a tie too.
    by_scores = calibrate(signals, judge, n_boot=50)
    assert by_scores["judge"]["basis"] == "scores"
    assert {by_scores["counts"][n]["n_ties_judge"] for n in signals} == {1}


def test_agreement_and_kappa_come_from_verdicts_not_from_imputed_rankings():
    # An intransitive judge: 0 > 1, 1 > 2, 2 > 0. Its Bradley-Terry scores tie all three, so a
    # score-based comparison would find no preference at all; the verdicts have three.
    verdicts = judge_pairs(
        [("q", 0, 1, 0.8, "logprobs"), ("q", 1, 2, 0.8, "logprobs"), ("q", 0, 2, 0.2, "logprobs")]
    )
    judge = scores("external_judge", {"q": [0.0, 0.0, 0.0]})
    signal = scores("s", {"q": [3.0, 2.0, 1.0]})  # 0 > 1 > 2: agrees on (0,1), (1,2), not (0,2)

    summary = calibrate({"s": signal}, judge, judge_pairs=verdicts, n_boot=50)
    entry, counts = summary["signals"]["s"], summary["counts"]["s"]

    assert (counts["n_pairs"], counts["n_compared"], counts["n_ties_judge"]) == (3, 3, 0)
    assert entry["pairwise_agreement"]["mean"] == pytest.approx(2 / 3)
    # By hand: signal prefers the first shown (lower index) on all 3 pairs, the judge on 2 of 3.
    # p_o = 2/3, p_e = 1 * 2/3 + 0 * 1/3 = 2/3, kappa = (2/3 - 2/3) / (1 - 2/3) = 0.
    assert entry["cohen_kappa"]["mean"] == pytest.approx(0.0)
    assert entry["kendall_tau"] is None  # the judge's scores are constant: no ranking
    assert counts["tau_excluded"]["constant_scores"] == 1


def test_invalid_verdicts_are_left_out_and_counted():
    verdicts = judge_pairs([("q", 0, 1, 0.9, "logprobs"), ("q", 0, 2, None, "invalid")])
    judge = scores("external_judge", {"q": [1.0, 0.0, 0.5]})
    summary = calibrate({"s": scores("s", {"q": [1.0, 0.0, 0.5]})}, judge, judge_pairs=verdicts)
    assert summary["judge"]["invalid_pairs"] == 1
    assert summary["counts"]["s"]["n_pairs"] == 1


def test_kappa_and_tau_match_independent_computations_on_random_data():
    import numpy as np
    from scipy.stats import kendalltau

    rng = np.random.default_rng(7)
    truth = {f"q{k}": list(rng.normal(size=5)) for k in range(12)}
    noisy = {q: list(np.asarray(v) + rng.normal(scale=0.8, size=5)) for q, v in truth.items()}
    rows = [
        (q, i, j, 0.75 if truth[q][i] > truth[q][j] else 0.25, "logprobs")
        for q in truth
        for i in range(5)
        for j in range(i + 1, 5)
    ]
    summary = calibrate(
        {"s": scores("s", noisy)}, scores("j", truth), judge_pairs=judge_pairs(rows), n_boot=20
    )
    entry = summary["signals"]["s"]

    # Cohen's kappa from the 2x2 table of (signal prefers first, judge prefers first).
    a = np.array([noisy[q][i] > noisy[q][j] for q, i, j, _, _ in rows])
    b = np.array([p > 0.5 for _, _, _, p, _ in rows])
    p_o = np.mean(a == b)
    p_e = a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean())
    assert entry["pairwise_agreement"]["mean"] == pytest.approx(p_o)
    assert entry["cohen_kappa"]["mean"] == pytest.approx((p_o - p_e) / (1 - p_e))
    taus = [kendalltau(noisy[q], truth[q]).statistic for q in truth]
    assert entry["kendall_tau"]["mean"] == pytest.approx(np.mean(taus))


def test_judge_health_sits_beside_each_judged_signal_and_controls_always_show():
    signal, judge = noisy_case(n_questions=6)
    health = {
        "self_judge": {
            "mean_label_mass": 4e-5,
            "position_bias": 0.97,
            "order_consistency": 0.1,
            "invalid_share": 0.0,
            "distinct_pairs": 40,
            "identical_pairs": 50,
        }
    }
    summary = calibrate({"self_judge": signal, "entropy": signal}, judge, health=health, n_boot=20)
    row = summary["signals"]["self_judge"]
    assert row["label_mass"] == 4e-5 and row["position_bias"] == 0.97
    assert row["order_consistency"] == 0.1 and row["distinct_pairs"] == 40
    assert summary["signals"]["entropy"]["label_mass"] is None
    text = calibration_markdown(summary)
    assert "| self_judge |" in text and "0.00004" in text
    for control in ("random", "length", "logprob"):
        assert f"| {control} (control) | not scored |" in text
    assert "imputed" in text  # the tau caveat is written beside the table


def test_snap_ties_groups_scores_within_tolerance_only():
    from satk8s.signals.schema import scores_tie, snap_ties

    assert scores_tie(0.1, 0.1 + 1e-12) and not scores_tie(0.1, 0.1 + 1e-4)
    assert snap_ties([0.3, 0.1, 0.1 + 1e-12, 0.2]) == [0.3, 0.1, 0.1, 0.2]
    # Anchored at the group's first value: a chain of near-equal steps does not merge far ends.
    chain = [k * 0.6e-7 for k in range(4)]
    assert len(set(snap_ties(chain))) == 2
