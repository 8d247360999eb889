"""Step `train`: fine-tune the policy on one training set with TRL."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from satk8s.errors import ConfigError
from satk8s.signals.gate import GATED_FILE
from satk8s.steps.generate import check_model_reference
from satk8s.steps.outputs import (
    commit,
    commit_partial,
    finished_summary,
    input_path,
    open_output,
)
from satk8s.store.stage_model import resolve_model
from satk8s.training.datasets import validate_training_set
from satk8s.training.train import TrainConfig, train


@dataclass(frozen=True)
class TrainStepConfig:
    model: str = ""
    """The model to start from (the policy that generated the samples)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Trainer settings (algorithm, learning rate, steps, LoRA, DPO beta, ...)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model", "no model given to train")


def train_model(
    dataset: str, out: str, config: TrainStepConfig, force: bool = False
) -> dict[str, Any]:
    """Writes `checkpoints/` (resumable) and `model/` (a plain HF checkpoint directory). A
    gated training set (its `gated.json`) is passed on: no model is loaded or trained, and the
    output holds the same `gated.json`."""
    if not force and (cached := finished_summary(out)):
        return cached
    started = time.time()
    dataset_root = input_path(dataset, "dataset", "step")
    training_set = finished_summary(dataset) or {}
    if (dataset_root / GATED_FILE).is_file():
        root = open_output(out, force)
        shutil.copyfile(dataset_root / GATED_FILE, root / GATED_FILE)
        gate = json.loads((root / GATED_FILE).read_text())
        summary = {"gated": True, "gate": gate, "algorithm": config.train.algorithm}
        return commit(root, "train", config, {"dataset": dataset}, summary, started)
    table = pq.read_table(dataset_root / "train.parquet")
    # Bad rows fail here, before a model is loaded or a GPU is touched.
    validate_training_set(table, config.train.algorithm, source=f"{dataset}/train.parquet")
    check_model_reference(config.model)
    root = open_output(out, force)  # checkpoints already there are resumed from
    summary = train(
        table,
        resolve_model(config.model),
        root,
        config.train,
        # Each checkpoint goes to the store as it is written: a restart resumes from it.
        on_checkpoint=lambda ckpt: commit_partial(root, ckpt.relative_to(root).as_posix()),
    )
    # The training set's size and weight spread travel with the model to the report.
    summary["training_set"] = {
        k: training_set.get(k) for k in ("algorithm", "rows", "questions", "weights")
    }
    return commit(root, "train", config, {"dataset": dataset}, summary, started)
