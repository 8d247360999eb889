"""Step `build_dataset`: one training set (signal x algorithm) from the kept solutions.

When the signal is a judge whose health fails `BuildConfig.judge_gate`, no set is built: the
step writes `gated.json` (the reasons and the judge's health) and finishes, and the cell's
train and evaluate steps pass the gate on instead of running.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow.parquet as pq

from satk8s.signals.gate import GATED_FILE, check_gate
from satk8s.steps.outputs import finished_summary, input_path, step_output
from satk8s.training.datasets import (
    BuildConfig,
    build_metadata,
    build_training_set,
    validate_training_set,
)


def build_dataset(
    kept: str, out: str, config: BuildConfig, scores: str = "", force: bool = False
) -> dict[str, Any]:
    """Writes `train.parquet` (or `gated.json` for a gated cell). `scores` (a signal output) is
    needed by every algorithm but sft; its `diagnostics.json`, when it holds judge health, is
    checked against the gate."""
    inputs = {"kept": kept, "scores": scores}
    with step_output(out, "build_dataset", config, inputs, force) as output:
        if output.cached is not None:
            return output.cached
        started = time.time()
        gate = {"passed": True, "reasons": [], "judged": False, "health": {}}
        score_table = None
        if scores:
            scores_root = input_path(scores, "scores", "step")
            score_table = pq.read_table(scores_root / "scores.parquet")
            diagnostics_file = scores_root / "diagnostics.json"
            if diagnostics_file.is_file():
                gate = check_gate(json.loads(diagnostics_file.read_text()), config.judge_gate)
        if not gate["passed"]:
            root = output.open()
            signal = (finished_summary(scores) or {}).get("signal", "")
            record = {"algorithm": config.algorithm, "signal": signal, **gate}
            (root / GATED_FILE).write_text(json.dumps(record, indent=2))
            summary = {"algorithm": config.algorithm, "rows": 0, "gated": True, "gate": gate}
            return output.commit(root, summary, started)
        kept_table = pq.read_table(input_path(kept, "kept", "step") / "kept.parquet")
        table = build_training_set(kept_table, score_table, config)
        validate_training_set(table, config.algorithm, source=f"training set built from {kept}")
        root = output.open()
        pq.write_table(table, root / "train.parquet")
        summary = {
            "algorithm": config.algorithm,
            "rows": table.num_rows,
            "questions": len(set(table.column("question_id").to_pylist())),
            "weights": build_metadata(table)["weights"],
            "gate": gate,
        }
        return output.commit(root, summary, started)
