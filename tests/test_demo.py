"""`make demo` is a positive control for the method: on the tiny model's world, training on a
quality signal beats SFT on two-digit additions, and the random control does not.

This runs the demo's own pipeline (the `smoke` grid through kfp.local, one torch thread as
`make demo` does) and reads its report.json, so a change that breaks the science fails CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from satk8s.grid import load_plan
from satk8s.orchestration.local_run import run_local
from satk8s.store.uri import absolute_uri

pytestmark = pytest.mark.slow

QUALITY_SIGNALS = ("entropy", "self_judge")
TWO_DIGIT = "eval_hard"  # two-digit additions: the shown work is right, the bare answer is not
ONE_DIGIT = "eval_id"  # one-digit questions outside the pool: nothing may break there


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's store after one run: `steps/<step>/<key>/` with every output's files."""
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SATK8S_THREADS", "1")  # as `make demo`: the tasks inherit it
        result = run_local(load_plan("smoke"), absolute_uri(str(root / "store")), root / "kfp")
    assert result.report is not None
    return root / "store"


@pytest.fixture(scope="module")
def report(demo_store: Path) -> dict:
    (path,) = demo_store.glob("steps/report/*/report.json")
    return json.loads(path.read_text())


def _cells(report: dict, signals: tuple[str, ...]) -> list[dict]:
    return [row for row in report["rows"] if row["signal"] in signals]


def test_the_demo_evaluates_two_digit_additions_and_one_digit_questions(report: dict) -> None:
    assert report["eval_sets"] == [ONE_DIGIT, TWO_DIGIT]
    labels = {row["label"] for row in report["rows"]}
    for signal in (*QUALITY_SIGNALS, "random"):
        for algorithm in ("best_of_n", "weighted_sft", "dpo"):
            assert f"{algorithm} / {signal}" in labels


def test_a_quality_signal_beats_sft_on_two_digit_additions(report: dict) -> None:
    lows = {
        row["label"]: row["eval_sets"][TWO_DIGIT]["delta_sft"]["lo"]
        for row in _cells(report, QUALITY_SIGNALS)
    }
    assert max(lows.values()) > 0, lows


def test_every_random_control_cell_is_within_its_interval_of_sft(report: dict) -> None:
    cells = _cells(report, ("random",))
    assert len(cells) == 3
    for row in cells:
        for eval_set in (TWO_DIGIT, ONE_DIGIT):
            delta = row["eval_sets"][eval_set]["delta_sft"]
            assert delta["lo"] <= 0 <= delta["hi"], (row["label"], eval_set, delta)


def test_the_self_judge_is_healthy_and_its_agreement_with_the_oracle_has_a_ci(report: dict):
    """Label mass and position bias on distinct pairs pass the judge gate (so its cells train),
    and its agreement with the external judge (the arith oracle) comes with an interval."""
    judge = report["calibration"]["signals"]["self_judge"]
    assert judge["label_mass"] >= 0.5
    assert 0.35 <= judge["position_bias"] <= 0.65
    agreement = judge["pairwise_agreement"]
    assert agreement["lo"] is not None and agreement["lo"] <= agreement["mean"] <= agreement["hi"]
    gated = [row["label"] for row in _cells(report, ("self_judge",)) if row.get("gated")]
    assert gated == []


# Independent recomputation: the numbers the demo's report prints, from the step outputs in the
# store, with pandas and numpy only (no satk8s statistics code), so a wrong statistic in the
# report cannot also be wrong here the same way.


def _outputs(store: Path, step: str) -> list[tuple[dict, Path]]:
    return [
        (json.loads((out / "manifest.json").read_text()), out)
        for out in sorted((store / "steps" / step).iterdir())
    ]


def _location(uri: str) -> str:
    """A model's store key: train outputs are evaluated from `<train>/model`; the base model is
    the tiny step's output, which the evaluate manifest records as no model input."""
    path = uri.removeprefix("file://").rstrip("/")
    if "/steps/tiny/" in path:
        return ""
    return path.removesuffix("/model")


def _per_question(store: Path) -> dict[str, pd.DataFrame]:
    """Each evaluated model's per-question table, keyed by `_location` of its model."""
    return {
        _location(manifest["inputs"].get("model", "")): pd.read_parquet(
            out / "per_question.parquet"
        )
        for manifest, out in _outputs(store, "evaluate")
    }


def _correct(table: pd.DataFrame, eval_set: str) -> pd.Series:
    rows = table[table.eval_set == eval_set]
    return rows.set_index("question_id").correct.astype(float).sort_index()


def test_every_accuracy_and_difference_of_the_table_recomputes_from_per_question_rows(
    demo_store: Path, report: dict
) -> None:
    tables = _per_question(demo_store)
    rows = {row["label"]: row for row in report["rows"]}
    references = {"delta_base": "base", "delta_sft": "sft"}
    p_values = []
    for row in report["rows"]:
        table = tables[_location(row["model"])]
        for eval_set, numbers in row["eval_sets"].items():
            correct = _correct(table, eval_set)
            assert numbers["accuracy"]["mean"] == pytest.approx(correct.mean(), abs=1e-12)
            for field, reference in references.items():
                if numbers[field] is None:
                    continue
                other = _correct(tables[_location(rows[reference]["model"])], eval_set)
                assert list(other.index) == list(correct.index)
                diff = correct - other
                assert numbers[field]["diff"] == pytest.approx(diff.mean(), abs=1e-12)
                # The paired percentile interval from another bootstrap (another generator,
                # 4000 resamples) lands within a question or two of the report's.
                rng = np.random.default_rng(2024)
                draws = rng.integers(0, len(diff), size=(4000, len(diff)))
                low, high = np.percentile(diff.to_numpy()[draws].mean(axis=1), [2.5, 97.5])
                tolerance = 2.5 / len(diff)
                assert abs(numbers[field]["lo"] - low) <= tolerance, (row["label"], field)
                assert abs(numbers[field]["hi"] - high) <= tolerance, (row["label"], field)
                p_values.append((numbers[field]["p_two_sided"], numbers[field]["p_holm"]))
    assert len(p_values) == report["multiplicity"]["comparisons"]
    raw = np.array([p for p, _ in p_values])
    holm = np.empty_like(raw)
    running = 0.0
    for rank, index in enumerate(np.argsort(raw, kind="stable")):
        running = max(running, min(1.0, (len(raw) - rank) * raw[index]))
        holm[index] = running
    assert np.allclose(holm, [adjusted for _, adjusted in p_values], atol=1e-12)


def _signal_outputs(store: Path) -> dict[str, Path]:
    return {manifest["config"]["signal"]: out for manifest, out in _outputs(store, "signals")}


def test_agreement_kappa_and_judge_health_recompute_from_the_verdicts(
    demo_store: Path, report: dict
) -> None:
    signals = _signal_outputs(demo_store)
    verdicts = pd.read_parquet(signals["external_judge"] / "pairs.parquet")
    judge_ties = np.abs(verdicts.p_ij.to_numpy() - 0.5) <= 1e-9
    calibration = report["calibration"]["signals"]
    assert set(calibration) == {"entropy", "self_judge", "random", "length", "logprob"}
    for name, numbers in calibration.items():
        scores = pd.read_parquet(signals[name] / "scores.parquet")
        score = scores.set_index(["question_id", "sample_index"]).score
        first = score.loc[list(zip(verdicts.question_id, verdicts.i, strict=True))].to_numpy()
        second = score.loc[list(zip(verdicts.question_id, verdicts.j, strict=True))].to_numpy()
        scale = np.maximum(1.0, np.maximum(np.abs(first), np.abs(second)))
        signal_ties = np.abs(first - second) <= 1e-7 * scale
        compared = ~judge_ties & ~signal_ties
        judge_says = verdicts.p_ij.to_numpy()[compared] > 0.5
        signal_says = (first - second)[compared] > 0
        agreement = float(np.mean(judge_says == signal_says))
        expected = judge_says.mean() * signal_says.mean() + (1 - judge_says.mean()) * (
            1 - signal_says.mean()
        )
        kappa = (agreement - expected) / (1 - expected)
        assert numbers["n_judge_ties"] == int(judge_ties.sum()), name
        assert numbers["n_signal_ties"] == int(signal_ties.sum()), name
        assert numbers["n_compared"] == int(compared.sum()), name
        assert numbers["pairwise_agreement"]["mean"] == pytest.approx(agreement, abs=1e-12), name
        assert numbers["cohen_kappa"]["mean"] == pytest.approx(kappa, abs=1e-12), name

    judged = pd.read_parquet(signals["self_judge"] / "pairs.parquet")
    distinct = judged[judged.method != "identical"]
    shown_first, shown_second = distinct.p_ij_first.to_numpy(), distinct.p_ij_second.to_numpy()
    # In the second order j is shown first, so the first-shown solution wins when p_ij < 0.5.
    first_shown_wins = np.concatenate([shown_first > 0.5, shown_second < 0.5])
    judge = calibration["self_judge"]
    assert judge["distinct_pairs"] == len(distinct)
    assert judge["position_bias"] == pytest.approx(first_shown_wins.mean(), abs=1e-12)
    consistent = (shown_first > 0.5) == (shown_second > 0.5)
    assert judge["order_consistency"] == pytest.approx(consistent.mean(), abs=1e-12)
    assert judge["label_mass"] == pytest.approx(distinct.label_mass.mean(), abs=1e-12)


def test_training_set_weight_spread_recomputes_from_the_weights(
    demo_store: Path, report: dict
) -> None:
    spread = {
        row["label"]: row["training_set"]["weights"] for row in report["rows"] if row["signal"]
    }
    signal_of = {str(out): name for name, out in _signal_outputs(demo_store).items()}
    checked = 0
    for manifest, out in _outputs(demo_store, "build_dataset"):
        if manifest["config"]["algorithm"] != "weighted_sft":
            continue
        signal = signal_of[manifest["inputs"]["scores"].removeprefix("file://").rstrip("/")]
        weights = pd.read_parquet(out / "train.parquet").weight.to_numpy()
        numbers = spread[f"weighted_sft / {signal}"]
        assert numbers["rows"] == len(weights)
        assert numbers["max_over_min"] == pytest.approx(weights.max() / weights.min())
        assert numbers["ess"] == pytest.approx(weights.sum() ** 2 / (weights**2).sum())
        checked += 1
    assert checked == 4
