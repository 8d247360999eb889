"""The train step commits each checkpoint to the store as it is written; a step that dies
midway and runs again (a new pod: empty local cache) resumes from the store's last checkpoint."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from satk8s.steps import train as train_step
from satk8s.steps.outputs import commit, finished_summary, open_output
from satk8s.steps.train import TrainStepConfig, train_model
from satk8s.store import get_store
from satk8s.training import TrainConfig
from tests.test_training import sft_table

pytestmark = pytest.mark.slow


class Preempted(Exception):
    pass


def _dataset(root: str) -> str:
    out = f"{root}/dataset"
    staging = open_output(out)
    pq.write_table(sft_table(), staging / "train.parquet")
    commit(staging, "build_dataset", {"algorithm": "sft"}, {}, {"rows": 8}, 0.0)
    return out


def test_a_train_step_killed_after_a_checkpoint_resumes_from_the_store(
    store_root: str,
    random_tiny_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = _dataset(store_root)
    out = f"{store_root}/train"
    config = TrainStepConfig(
        model=str(random_tiny_dir),
        train=TrainConfig(
            max_steps=4, save_steps=2, per_device_batch_size=4, max_length=64, logging_steps=1
        ),
    )
    real_commit_partial = train_step.commit_partial

    def commit_then_die(root: Path, rel: str) -> None:
        real_commit_partial(root, rel)
        raise Preempted(rel)  # the pod is gone right after its first checkpoint reached the store

    monkeypatch.setattr(train_step, "commit_partial", commit_then_die)
    with pytest.raises(Preempted, match="checkpoints/checkpoint-2"):
        train_model(dataset, out, config)
    assert finished_summary(out) is None  # a partial output never looks finished
    names = [o.uri for o in get_store(out).list(out)]
    assert any("checkpoint-2/trainer_state.json" in n for n in names)

    # A new pod: nothing local survives but the store.
    monkeypatch.setattr(train_step, "commit_partial", real_commit_partial)
    monkeypatch.setenv("SATK8S_STORE_CACHE", str(tmp_path / "fresh-cache"))
    summary = train_model(dataset, out, config)
    assert summary["resumed_from"] == "checkpoint-2"
    assert summary["steps"] == 4
    assert finished_summary(out)["steps"] == 4
