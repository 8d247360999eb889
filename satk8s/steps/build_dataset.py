"""Step `build_dataset`: one training set (signal x algorithm) from the kept solutions."""

from __future__ import annotations

import time
from typing import Any

import pyarrow.parquet as pq

from satk8s.steps.outputs import input_path, step_output
from satk8s.training.datasets import BuildConfig, build_training_set, validate_training_set


def build_dataset(
    kept: str, out: str, config: BuildConfig, scores: str = "", force: bool = False
) -> dict[str, Any]:
    """Writes `train.parquet`. `scores` (a signal output) is needed by every algorithm but sft."""
    with step_output(
        out, "build_dataset", config, {"kept": kept, "scores": scores}, force
    ) as output:
        if output.cached is not None:
            return output.cached
        started = time.time()
        kept_table = pq.read_table(input_path(kept, "kept", "step") / "kept.parquet")
        score_table = (
            pq.read_table(input_path(scores, "scores", "step") / "scores.parquet")
            if scores
            else None
        )
        table = build_training_set(kept_table, score_table, config)
        validate_training_set(table, config.algorithm, source=f"training set built from {kept}")
        root = output.open()
        pq.write_table(table, root / "train.parquet")
        summary = {
            "algorithm": config.algorithm,
            "rows": table.num_rows,
            "questions": len(set(table.column("question_id").to_pylist())),
        }
        return output.commit(root, summary, started)
