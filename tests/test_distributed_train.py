"""Training in several processes (torchrun, FSDP2 on gloo) keeps SFT, weighted SFT and DPO what
they are with one process: the same losses and weights within float rounding; rank 0 alone
commits the output, and a run killed after a checkpoint resumes from the store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from satk8s.errors import ConfigError
from satk8s.steps.outputs import commit, finished_summary, open_output
from satk8s.steps.train import TrainStepConfig, train_model
from satk8s.store import get_store
from satk8s.training.distributed import DistributedConfig, rank_batching, trainer_args
from satk8s.training.train import TrainConfig
from tests.test_training import dpo_table, sft_table

LOSS_TOLERANCE = 1e-5
"""Relative: two processes sum the same token losses in another order (gloo all-reduce), so a
loss may differ from one process's in the 7th digit (measured: 5e-7 relative)."""
WEIGHT_TOLERANCE = 5e-5
"""Absolute, on every weight after the last of 3 steps at learning rate 1e-3, which move a weight
by up to 3e-3: AdamW divides each gradient by its running RMS, so a near-zero gradient whose last
bits differ can move its weight by a visible share of the learning rate (measured: 1.4e-5 for
DPO, below 1e-6 for SFT)."""
WEIGHTS = [0.25, 1.75, 1.0, 0.5, 2.0, 0.5, 1.5, 0.5]


# ----------------------------------------------------------------------------- batch split


@pytest.mark.parametrize(
    ("per_device", "accumulation", "world", "expected"),
    [
        (8, 1, 2, (4, 1)),  # the micro-batch is split
        (8, 4, 2, (8, 2)),  # accumulation first: the micro-batch (activation memory) stays
        (8, 4, 16, (2, 1)),
        (6, 1, 3, (2, 1)),
        (4, 3, 2, (3, 2)),  # 12 per step -> 6 per process as 2 micro-batches of 3
    ],
)
def test_the_batch_per_optimizer_step_is_split_over_the_processes(
    per_device, accumulation, world, expected
):
    micro, steps = rank_batching(per_device, accumulation, world)
    assert (micro, steps) == expected
    assert micro * steps * world == per_device * accumulation


def test_a_batch_that_does_not_split_over_the_processes_is_refused_naming_the_fields():
    with pytest.raises(ConfigError, match="per_device_batch_size x gradient_accumulation"):
        TrainStepConfig(
            model="m",
            train=TrainConfig(per_device_batch_size=3, gradient_accumulation_steps=1),
            distributed=DistributedConfig(processes=2),
        )


@pytest.mark.parametrize(
    ("field", "value"), [("processes", 0), ("nodes", 0), ("strategy", "dataparallel")]
)
def test_distributed_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        DistributedConfig(**{field: value})


def test_fsdp_shards_with_full_state_dict_checkpoints_and_ddp_does_not():
    fsdp = trainer_args(DistributedConfig(processes=2), 8, 1, 2)
    assert fsdp["fsdp"] == "full_shard auto_wrap"
    assert fsdp["fsdp_config"]["version"] == 2
    assert fsdp["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT"
    ddp = trainer_args(DistributedConfig(processes=2, strategy="ddp"), 8, 1, 2)
    assert "fsdp" not in ddp and ddp["per_device_train_batch_size"] == 4
    on_cpu = trainer_args(DistributedConfig(processes=2), 8, 1, 2, on_gpu=False)
    assert "fsdp" not in on_cpu  # accelerate applies FSDP on accelerators only
    assert "fsdp" not in trainer_args(DistributedConfig(processes=2), 8, 1, 2, lora=True)
    assert trainer_args(DistributedConfig(), 8, 1, 1) == {}  # one process: nothing changes


# ----------------------------------------------------------------------------- 2 vs 1 process


def _dataset(root: Path, name: str, table: pa.Table, algorithm: str) -> str:
    out = str(root / name)
    staging = open_output(out)
    pq.write_table(table, staging / "train.parquet")
    commit(staging, "build_dataset", {"algorithm": algorithm, "name": name}, {}, {}, 0.0)
    return out


def _config(model: Path, algorithm: str, processes: int, **train: object) -> TrainStepConfig:
    settings = dict(
        algorithm=algorithm,
        max_steps=3,
        save_steps=2,
        per_device_batch_size=8 if algorithm != "dpo" else 4,
        learning_rate=1e-3,
        logging_steps=1,
        max_length=64,
        device="cpu",
    )
    settings.update(train)
    return TrainStepConfig(
        model=str(model),
        train=TrainConfig(**settings),
        distributed=DistributedConfig(processes=processes),
    )


def _weights(out: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out) / "model" / "model.safetensors"))


def _max_weight_difference(a: str, b: str) -> float:
    one, two = _weights(a), _weights(b)
    assert one.keys() == two.keys()
    return max(float((one[k] - two[k]).abs().max()) for k in one)


@pytest.fixture(scope="module")
def runs(random_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each algorithm trained by the train step in one process and in two (torchrun, FSDP)."""
    root = tmp_path_factory.mktemp("distributed")
    sets = {
        "sft": _dataset(root, "sft-set", sft_table(), "sft"),
        "weighted_sft": _dataset(root, "weighted-set", sft_table(WEIGHTS), "weighted_sft"),
        "unit_weighted_sft": _dataset(root, "unit-set", sft_table(), "weighted_sft"),
        "dpo": _dataset(root, "dpo-set", dpo_table(), "dpo"),
    }
    jobs = [
        ("sft", "sft", 1),
        ("sft", "sft", 2),
        ("weighted_sft", "weighted_sft", 1),
        ("weighted_sft", "weighted_sft", 2),
        ("unit_weighted_sft", "weighted_sft", 2),
        ("dpo", "dpo", 1),
        ("dpo", "dpo", 2),
        ("lora", "sft", 1),
        ("lora", "sft", 2),
    ]
    sets["lora"] = sets["sft"]
    found = {}
    for name, algorithm, processes in jobs:
        out = str(root / f"{name}-{processes}")
        # No LoRA dropout: each process draws its own dropout masks, another (valid) draw.
        extra = {"lora": True, "lora_r": 4, "lora_dropout": 0.0} if name == "lora" else {}
        config = _config(random_tiny_dir, algorithm, processes, **extra)
        summary = train_model(sets[name], out, config)
        found[f"{name}-{processes}"] = {"summary": summary, "out": out, "dataset": sets[name]}
    return found


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["sft", "weighted_sft", "dpo", "lora"])
def test_two_processes_give_one_process_losses_and_weights(runs, algorithm):
    """`lora`: SFT of a LoRA adapter, merged into the saved model from the final checkpoint."""
    one, two = runs[f"{algorithm}-1"], runs[f"{algorithm}-2"]
    assert one["summary"]["world_size"] == 1 and two["summary"]["world_size"] == 2
    # accelerate shards with FSDP on GPUs only: CPU processes run DDP (trainer_args).
    assert two["summary"]["sharding"] == "ddp" and one["summary"]["sharding"] == "none"
    assert len(two["summary"]["losses"]) == 3
    assert two["summary"]["losses"] == pytest.approx(one["summary"]["losses"], rel=LOSS_TOLERANCE)
    assert two["summary"]["tokens_seen"] == one["summary"]["tokens_seen"]
    assert _max_weight_difference(one["out"], two["out"]) < WEIGHT_TOLERANCE


@pytest.mark.slow
def test_weighted_sft_at_weight_one_in_two_processes_is_sft(runs):
    sft, weighted = runs["sft-1"], runs["unit_weighted_sft-2"]
    assert weighted["summary"]["losses"] == pytest.approx(
        sft["summary"]["losses"], rel=LOSS_TOLERANCE
    )
    assert _max_weight_difference(sft["out"], weighted["out"]) < WEIGHT_TOLERANCE


@pytest.mark.slow
def test_rank_zero_alone_commits_checkpoints_model_and_manifest(runs):
    out = runs["sft-2"]["out"]
    assert finished_summary(out)["world_size"] == 2
    listed = sorted(o.uri[len(out) + 1 :] for o in get_store(out).list(out))
    assert "manifest.json" in listed and "model/model.safetensors" in listed
    # The checkpoints rank 0 committed while training are gone with the finished output: it
    # keeps only the model (satk8s.steps.train).
    assert not [name for name in listed if name.startswith("checkpoints/")]
    # No writer's staging or second lease is left behind by the other rank.
    assert not [name for name in listed if name.startswith(".staging")]


@pytest.mark.slow
def test_two_process_run_killed_after_a_checkpoint_resumes_to_the_same_weights(
    runs, random_tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    reference = runs["sft-2"]
    out = str(tmp_path / "killed")
    config = _config(random_tiny_dir, "sft", 2)
    monkeypatch.setenv("SATK8S_FAULT", "after-checkpoint@1:kill")  # rank 0, once checkpoint-2 is in
    with pytest.raises(Exception, match="torchrun with 2 processes exited"):
        train_model(reference["dataset"], out, config)
    assert finished_summary(out) is None
    monkeypatch.delenv("SATK8S_FAULT")
    resumed = train_model(reference["dataset"], out, config)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 3
    assert resumed["losses"] == pytest.approx(reference["summary"]["losses"], rel=LOSS_TOLERANCE)
    assert _max_weight_difference(reference["out"], out) == 0.0
    assert os.environ.get("SATK8S_FAULT") is None


def test_workers_share_the_steps_cpu_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from satk8s.training.distributed import _worker_env

    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    env = _worker_env(4)
    assert env["OMP_NUM_THREADS"] == env["SATK8S_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _worker_env(2)["OMP_NUM_THREADS"] == "1"  # never below one


def _two_node_run(request: Path, env: dict[str, str]) -> list[int]:
    """torchrun twice on this machine, as two nodes of one job (node ranks 0 and 1): what the
    nodes of a TrainJob run, each with its own torchrun (`satk8s.training.trainjob`)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={rank}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "-m",
                "satk8s.training.distributed",
                str(request),
            ],
            env=env,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    return [node.wait(timeout=600) for node in nodes]


@pytest.mark.slow
def test_a_second_node_resumes_from_its_own_copy_of_the_committed_checkpoints(
    runs, random_tiny_dir: Path, tmp_path: Path
) -> None:
    """Node 1 shares no disk with node 0: its local rank 0 copies the committed pieces from the
    store (read only) and trains from them, while global rank 0 alone writes."""
    from satk8s.store.identity import plain_config

    reference = runs["sft-2"]
    out = str(tmp_path / "two-nodes")
    config = _config(random_tiny_dir, "sft", 1)
    config = TrainStepConfig(config.model, config.train, DistributedConfig(nodes=2))
    request = tmp_path / "request.json"
    result = tmp_path / "summary.json"
    body = {"dataset": reference["dataset"], "out": out, "config": plain_config(config)}
    request.write_text(json.dumps({**body, "force": False, "result": str(result)}))
    env = {**os.environ, "SATK8S_FAULT": "after-checkpoint@1:kill"}
    assert _two_node_run(request, env) != [0, 0]  # rank 0 died once checkpoint-2 was in
    assert finished_summary(out) is None
    env.pop("SATK8S_FAULT")
    assert _two_node_run(request, env) == [0, 0]
    summary = json.loads(result.read_text())
    assert summary["resumed_from"] == "checkpoint-2" and summary["world_size"] == 2
    # Two nodes of one process each: the two-process run of one pod, to the bit.
    assert _max_weight_difference(reference["out"], out) == 0.0
    assert not list(Path(out).glob(".staging/*"))  # node 1's copy is gone again
