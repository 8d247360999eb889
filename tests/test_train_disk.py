"""What `train` keeps on disk and in the store: only the checkpoint resume needs while it runs,
no checkpoint once it is finished, and a final model in the training dtype without optimizer
state (before: fp32 weights and AdamW state in two kept checkpoints plus the final model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from satk8s.steps import train as train_step
from satk8s.steps.outputs import finished_summary
from satk8s.steps.train import TrainStepConfig, train_model
from satk8s.store import get_store
from satk8s.training import TrainConfig
from satk8s.training.train import _save_final
from tests.test_train_resume_store import _dataset


def test_the_final_model_is_saved_in_the_training_dtype_without_optimizer_state(
    random_tiny_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(random_tiny_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(random_tiny_dir)

    _save_final(model, tokenizer, tmp_path / "model", torch.bfloat16)

    files = {p.name for p in (tmp_path / "model").iterdir()}
    assert "model.safetensors" in files
    assert not files & {"optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth"}
    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as weights:
        dtypes = {weights.get_slice(k).get_dtype() for k in weights.keys()}  # noqa: SIM118
    assert dtypes == {"BF16"}
    assert json.loads((tmp_path / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "model").dtype == torch.bfloat16
    # A float32 run (CPU) keeps float32.
    fp32 = AutoModelForCausalLM.from_pretrained(random_tiny_dir, dtype=torch.float32)
    _save_final(fp32, tokenizer, tmp_path / "fp32", None)
    with safe_open(tmp_path / "fp32" / "model.safetensors", "pt") as weights:
        assert {weights.get_slice(k).get_dtype() for k in weights.keys()} == {"F32"}  # noqa: SIM118


def test_resume_needs_one_checkpoint_by_default() -> None:
    assert TrainConfig().save_total_limit == 1


@pytest.mark.slow  # trains a random tiny model for 4 steps (~10 s)
def test_the_store_keeps_only_the_newest_checkpoint_and_the_finished_output_none(
    store_root: str, random_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = _dataset(store_root)
    out = f"{store_root}/train"
    config = TrainStepConfig(
        model=str(random_tiny_dir),
        train=TrainConfig(max_steps=4, save_steps=1, per_device_batch_size=4, max_length=64),
    )
    in_store: list[list[str]] = []
    real = train_step.drop_partial

    def dropped_then_look(root: Path, rel: str) -> None:
        real(root, rel)
        committed = [o.uri[len(out) + 1 :] for o in get_store(out).list(out)]
        in_store.append(
            sorted({p.split("/")[1] for p in committed if p.startswith("checkpoints/")})
        )

    monkeypatch.setattr(train_step, "drop_partial", dropped_then_look)

    summary = train_model(dataset, out, config)

    assert summary["steps"] == 4
    # After each new checkpoint reached the store, the one before left it.
    assert in_store == [["checkpoint-2"], ["checkpoint-3"], ["checkpoint-4"]]
    objects = [o.uri[len(out) + 1 :] for o in get_store(out).list(out)]
    assert not [o for o in objects if o.startswith("checkpoints/")]
    assert "model/model.safetensors" in objects
    assert finished_summary(out)["steps"] == 4
