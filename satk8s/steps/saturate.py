"""Step `saturate`: verify every sample and keep the saturated questions' correct solutions."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from satk8s.errors import ConfigError
from satk8s.generation.shards import read_samples
from satk8s.saturation import accuracy_histogram, kept_solutions, question_accuracy, verify_samples
from satk8s.steps.outputs import input_path, step_output
from satk8s.tasks.io import read_questions


@dataclass(frozen=True)
class SaturateConfig:
    threshold: float = 1.0
    """A question is saturated when its empirical accuracy is at least this (1.0: every sample)."""
    split: str = "train"
    """The question split the samples were drawn from (for the gold answers)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError("threshold", f"must be in (0, 1], got {self.threshold}")


def saturate(
    questions: str,
    samples: str,
    out: str,
    config: SaturateConfig = SaturateConfig(),
    force: bool = False,
) -> dict[str, Any]:
    """Writes `verified.parquet` (every sample), `accuracy.parquet` (per question),
    `kept.parquet` (correct samples of saturated questions) and `summary.json`."""
    inputs = {"questions": questions, "samples": samples}
    with step_output(out, "saturate", config, inputs, force) as output:
        if output.cached is not None:
            return output.cached
        started = time.time()
        gold, _ = read_questions(input_path(questions, "questions", "step"), config.split)
        table = read_samples(input_path(samples, "samples", "step"))
        verified = verify_samples(table, {q.id: q.answer for q in gold})
        accuracy = question_accuracy(verified, config.threshold)
        kept = kept_solutions(verified, accuracy)

        root = output.open()
        pq.write_table(verified, root / "verified.parquet")
        pq.write_table(accuracy, root / "accuracy.parquet")
        pq.write_table(kept, root / "kept.parquet")
        n_questions = accuracy.num_rows
        n_saturated = sum(accuracy.column("saturated").to_pylist())
        n_correct = sum(verified.column("correct").to_pylist())
        summary = {
            "questions": n_questions,
            "samples": verified.num_rows,
            "sample_accuracy": n_correct / max(verified.num_rows, 1),
            "saturated_questions": n_saturated,
            "saturated_fraction": n_saturated / max(n_questions, 1),
            "kept_solutions": kept.num_rows,
            "threshold": config.threshold,
            "histogram": accuracy_histogram(accuracy),
        }
        (root / "summary.json").write_text(json.dumps(summary, indent=2))
        return output.commit(root, summary, started)
