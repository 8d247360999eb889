"""Step `train`: fine-tune the policy on one training set with TRL."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from satk8s.errors import ConfigError
from satk8s.signals.gate import GATED_FILE
from satk8s.steps.outputs import (
    cached_summary,
    commit_partial,
    drop_partial,
    finished_summary,
    input_path,
    step_output,
)
from satk8s.store.faults import fault_point
from satk8s.store.stage_model import resolve_model
from satk8s.store.uri import join
from satk8s.training.datasets import validate_training_set
from satk8s.training.distributed import (
    DistributedConfig,
    Rank,
    follow,
    init_process_group,
    trainer_args,
    under_torchrun,
)
from satk8s.training.train import CHECKPOINTS, MODEL, TrainConfig, is_final_checkpoint, train


@dataclass(frozen=True)
class TrainStepConfig:
    model: str = ""
    """The model to start from (the policy that generated the samples)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Trainer settings (algorithm, learning rate, steps, LoRA, DPO beta, ...)."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Processes per node, nodes and sharding (FSDP or DDP); one process by default."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model", "no model given to train")
        world = self.distributed.world
        if world > 1:  # the batch per optimizer step must split evenly over the processes
            trainer_args(
                self.distributed,
                self.train.per_device_batch_size,
                self.train.gradient_accumulation_steps,
                world,
            )


def train_model(
    dataset: str, out: str, config: TrainStepConfig, force: bool = False
) -> dict[str, Any]:
    """Writes `model/` (a plain HF checkpoint directory). While it trains, each checkpoint goes
    to the store as it is written and replaces the one before (resume needs only the newest);
    the finished output keeps none. A gated training set (its `gated.json`) is passed on: no
    model is loaded or trained, and the output holds the same `gated.json`.

    With `distributed.nodes > 1` the step runs as a Kubeflow Trainer TrainJob
    (`satk8s.training.trainjob`); with several processes per node, under torchrun in this pod
    (`satk8s.training.distributed`). In both, every process runs this function again as its
    rank, and global rank 0 alone holds the output and commits it."""
    spread = config.distributed
    if spread.world > 1 and not under_torchrun():
        # Done, gated or bad: decided here, before any process starts or any GPU is asked for.
        if (
            cached := cached_summary(out, "train", config, {"dataset": dataset}, force)
        ) is not None:
            return cached
        dataset_root = input_path(dataset, "dataset", "step")
        if not (dataset_root / GATED_FILE).is_file():  # a gated set is passed on below
            table = pq.read_table(dataset_root / "train.parquet")
            validate_training_set(table, config.train.algorithm, source=f"{dataset}/train.parquet")
            if spread.nodes > 1:
                from satk8s.training.trainjob import run_trainjob

                return run_trainjob(dataset, out, config, force)
            from satk8s.training.distributed import launch

            return launch(dataset, out, config, force, spread.processes)
    rank = Rank.current()
    if rank.world > 1:
        init_process_group()
    if not rank.is_zero:
        return _follow_rank_zero(rank, dataset, out, config)
    with step_output(out, "train", config, {"dataset": dataset}, force) as output:
        if output.cached is not None:
            rank.announce(None)
            return output.cached
        started = time.time()
        dataset_root = input_path(dataset, "dataset", "step")
        training_set = finished_summary(dataset) or {}
        if (dataset_root / GATED_FILE).is_file():
            rank.announce(None)
            root = output.open()
            shutil.copyfile(dataset_root / GATED_FILE, root / GATED_FILE)
            gate = json.loads((root / GATED_FILE).read_text())
            summary = {"gated": True, "gate": gate, "algorithm": config.train.algorithm}
            return output.commit(root, summary, started)
        table = pq.read_table(dataset_root / "train.parquet")
        # Bad rows fail here, before a model is loaded or a GPU is touched.
        validate_training_set(table, config.train.algorithm, source=f"{dataset}/train.parquet")
        root = output.open()  # checkpoints already there are resumed from
        committed = sorted(p.relative_to(root).as_posix() for p in (root / CHECKPOINTS).glob("*"))

        def checkpoint_done(checkpoint: Path) -> None:
            # In the store as soon as it is written: a restart resumes from it. The trainer has
            # already removed the checkpoints its save_total_limit drops; so does the store.
            committed.append(checkpoint.relative_to(root).as_posix())
            commit_partial(root, committed[-1])
            fault_point("after-checkpoint")
            for rel in [c for c in committed if not (root / c).exists()]:
                drop_partial(root, rel)
                committed.remove(rel)
            if is_final_checkpoint(checkpoint):
                fault_point("after-last-checkpoint")

        model = resolve_model(config.model)
        rank.announce({"root": str(root), "node": rank.node, "identity": output.identity})
        summary = train(
            table,
            model,
            Path(rank.gather_roots(str(root))),
            config.train,
            on_checkpoint=checkpoint_done,
            run_identity=output.identity,
            trainer_args=_trainer_args(config, rank),
        )
        # Finished: nothing will resume from the checkpoints (float32 weights and optimizer
        # state, several times the model); the output is the model. The store drops them once
        # the manifest exists, so a crash before that still resumes from the final one.
        shutil.rmtree(root / CHECKPOINTS, ignore_errors=True)
        summary.pop("model_dir")  # the staging directory, gone once committed
        summary["model"] = join(out, MODEL)
        # The training set's size and weight spread travel with the model to the report.
        summary["training_set"] = {
            k: training_set.get(k) for k in ("algorithm", "rows", "questions", "weights")
        }
        return output.commit(root, summary, started)


def _trainer_args(config: TrainStepConfig, rank: Rank) -> dict[str, Any]:
    import torch

    t = config.train
    on_gpu = t.device != "cpu" and torch.cuda.is_available()
    return trainer_args(
        config.distributed,
        t.per_device_batch_size,
        t.gradient_accumulation_steps,
        rank.world,
        on_gpu,
        t.lora,
    )


def _follow_rank_zero(
    rank: Rank, dataset: str, out: str, config: TrainStepConfig
) -> dict[str, Any]:
    """A rank other than 0: train beside rank 0, writing nothing to the store."""
    from satk8s.steps.outputs import committed_copy
    from satk8s.store.cache import drop_staging

    def train_here(message: dict[str, Any], root: Path) -> None:
        table = pq.read_table(input_path(dataset, "dataset", "step") / "train.parquet")
        train(
            table,
            resolve_model(config.model),
            root,
            config.train,
            run_identity=message["identity"],
            trainer_args=_trainer_args(config, rank),
        )

    return follow(rank, lambda message: committed_copy(out), train_here, drop_staging)
