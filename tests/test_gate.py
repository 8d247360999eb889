"""The judge health gate: a training cell whose judge fails it is not trained, and every step
of the cell still finishes, so a compiled pipeline runs on to its report."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from satk8s.errors import ConfigError
from satk8s.signals.gate import GATED_FILE, JudgeGate, check_gate
from satk8s.signals.schema import ScoreRow, scores_table
from satk8s.steps.build_dataset import build_dataset
from satk8s.steps.evaluate import EvaluateStepConfig, evaluate, load_evaluation
from satk8s.steps.outputs import commit, finished_summary, open_output
from satk8s.steps.train import TrainStepConfig, train_model
from satk8s.training import BuildConfig

HEALTHY = {
    "distinct_pairs": 40,
    "identical_pairs": 10,
    "mean_label_mass": 0.93,
    "invalid_share": 0.0,
    "position_bias": 0.52,
    "order_consistency": 0.8,
}
SILENT = {**HEALTHY, "mean_label_mass": 4e-5, "position_bias": 1.0, "order_consistency": 0.0}


def test_a_healthy_judge_passes_and_a_non_judge_is_not_gated():
    assert check_gate(HEALTHY, JudgeGate())["passed"]
    assert check_gate({}, JudgeGate()) == {
        "passed": True,
        "reasons": [],
        "judged": False,
        "health": {},
    }
    # A judge that reads no label probabilities (the oracle) has no label mass to check.
    assert check_gate({**HEALTHY, "mean_label_mass": None}, JudgeGate())["passed"]


def test_a_judge_that_never_answers_fails_with_every_reason_named():
    result = check_gate(SILENT, JudgeGate())
    assert not result["passed"]
    assert result["reasons"] == [
        "label mass 4e-05 < 0.5",
        "position bias 1.000 outside [0.35, 0.65]",
    ]
    assert result["health"]["mean_label_mass"] == 4e-5
    strict = JudgeGate(min_order_consistency=0.5, max_invalid_share=0.01)
    assert "order consistency 0.000 < 0.5" in check_gate(SILENT, strict)["reasons"]
    assert check_gate({**HEALTHY, "invalid_share": 0.2}, strict)["reasons"] == [
        "invalid share 0.200 > 0.01"
    ]
    assert check_gate(SILENT, JudgeGate(enabled=False))["passed"]
    unmeasured = check_gate({**HEALTHY, "position_bias": None}, JudgeGate())
    assert unmeasured["reasons"] == ["position bias unmeasured (no distinct pair judged)"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_label_mass", 1.5), ("position_bias_min", -0.1), ("max_invalid_share", float("nan"))],
)
def test_gate_settings_are_checked_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"judge_gate.{field}"):
        JudgeGate(**{field: value})
    with pytest.raises(ConfigError, match="position_bias_min"):
        JudgeGate(position_bias_min=0.7, position_bias_max=0.6)


def _output(uri: str, step: str, files: dict[str, object], summary: dict) -> str:
    root = open_output(uri)
    for name, content in files.items():
        if isinstance(content, pa.Table):
            pq.write_table(content, root / name)
        else:
            (root / name).write_text(json.dumps(content))
    commit(root, step, {}, {}, summary, time.time())
    return uri


def _kept_and_scores(tmp_path, diagnostics: dict) -> tuple[str, str]:
    kept = pa.table(
        {
            "question_id": ["q", "q"],
            "sample_index": pa.array([0, 1], pa.int32()),
            "prompt": ["Question: 1+1\nAnswer:"] * 2,
            "completion": [" 1+1=2\n#### 2", " #### 2"],
            "correct": [True, True],
        }
    )
    scores = scores_table(
        [ScoreRow("q", 0, "self_judge", 0.4, 1.5), ScoreRow("q", 1, "self_judge", -0.4, 0.7)]
    )
    kept_uri = _output(str(tmp_path / "kept"), "saturate", {"kept.parquet": kept}, {})
    scores_uri = _output(
        str(tmp_path / "scores"),
        "signals",
        {"scores.parquet": scores, "diagnostics.json": diagnostics},
        {"signal": "self_judge"},
    )
    return kept_uri, scores_uri


def test_a_gated_cell_finishes_every_step_without_training_or_evaluating(tmp_path, random_tiny_dir):
    kept, scores = _kept_and_scores(tmp_path, SILENT)
    dataset = str(tmp_path / "dataset")
    summary = build_dataset(kept, dataset, BuildConfig(algorithm="dpo"), scores=scores)
    assert summary["gated"] is True and summary["rows"] == 0
    assert not (tmp_path / "dataset" / "train.parquet").exists()
    record = json.loads((tmp_path / "dataset" / GATED_FILE).read_text())
    assert record["signal"] == "self_judge" and "label mass 4e-05 < 0.5" in record["reasons"]

    # The model is part of the step's identity (checked to be a checkpoint), but a gated
    # training step loads no weights and writes no model.
    trained = str(tmp_path / "train")
    config = TrainStepConfig(model=str(random_tiny_dir))
    assert train_model(dataset, trained, config)["gated"] is True
    assert finished_summary(trained)["gated"] is True
    assert not (tmp_path / "train" / "model").exists()

    evaluated = str(tmp_path / "evaluate")
    labels = EvaluateStepConfig(algorithm="dpo", signal="self_judge", seed=0)
    assert evaluate(str(tmp_path / "no-questions"), evaluated, labels, model=trained)["gated"]
    cell = load_evaluation(evaluated)
    assert cell["gated"]["reasons"] == record["reasons"]
    assert (cell["algorithm"], cell["signal"]) == ("dpo", "self_judge")


def test_a_healthy_judge_builds_its_set_and_records_the_gate(tmp_path):
    kept, scores = _kept_and_scores(tmp_path, HEALTHY)
    summary = build_dataset(
        kept, str(tmp_path / "d"), BuildConfig(algorithm="weighted_sft"), scores=scores
    )
    assert summary["rows"] == 2 and summary["gate"]["passed"] is True
    assert summary["weights"]["max_over_min"] > 1
    assert not (tmp_path / "d" / GATED_FILE).exists()
    # Turned off, the failing judge trains its cell all the same.
    kept, scores = _kept_and_scores(tmp_path / "off", SILENT)
    config = BuildConfig(algorithm="best_of_n", judge_gate={"enabled": False})
    assert build_dataset(kept, str(tmp_path / "off" / "d"), config, scores=scores)["rows"] == 1
