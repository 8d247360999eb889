"""Training beyond one process: torchrun with FSDP (or DDP) in one pod, and the rank logic of
the train step wherever torchrun runs it (this pod, or every node of a Kubeflow TrainJob).

One pod, several GPUs: the train step starts `torchrun --standalone --nproc-per-node=P -m
satk8s.training.distributed REQUEST` and waits. Every process runs the same step function
(`satk8s.steps.train.train_model`), which reads its role from torchrun's environment:

- global rank 0 holds the output's lease, pre-fills the staging directory with the committed
  checkpoints (resume), trains, commits each checkpoint as it is written, saves the final model
  from the final checkpoint and creates the manifest: the store sees one writer, as with one
  process;
- every other rank waits for rank 0's word (nothing to do when the output is cached or gated),
  trains from the same directory (on another node: its own read-only copy of the committed
  pieces, for resume) and writes nothing to the store.

The batch per optimizer step stays what the config says however many processes train:
`per_device_batch_size x gradient_accumulation_steps` examples, split evenly across the
processes (`rank_batching`), so one GPU and eight give the same run (the same losses within
float rounding, tested with two CPU processes on gloo). FSDP (`strategy: fsdp`, the default) is
PyTorch's FSDP2 through transformers/accelerate, on GPUs: weights, gradients and optimizer
states are sharded across the processes, and checkpoints hold the full state dict (gathered on
rank 0), so a run resumes on any number of processes and the final checkpoint loads as a plain
model. Processes on CPU run DDP (`trainer_args`).

Nothing here imports torch at module level: step configs import `DistributedConfig`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satk8s.errors import ConfigError, Satk8sError

log = logging.getLogger(__name__)

STRATEGIES = ("fsdp", "ddp")
COLLECTIVE_TIMEOUT_S = 3 * 3600
"""How long ranks wait for each other in one collective. Rank 0 uploads every checkpoint to the
store while the others wait at their next step; a multi-GB checkpoint over a slow link must not
trip torch's default 30 minutes."""


@dataclass(frozen=True)
class DistributedConfig:
    """How many processes train one cell, and how they share the model."""

    processes: int = 1
    """Training processes per node. A grid sets it to the train role's GPUs
    (`compute.train.accelerator_count`): one process per GPU. On CPU, processes on the gloo
    backend (tests, benchmarks)."""
    nodes: int = 1
    """Nodes (pods) training together. More than one runs the step as a Kubeflow Trainer
    `TrainJob` (a grid sets it from `compute.train.nodes`)."""
    strategy: str = "fsdp"
    """`fsdp`: FSDP2 full sharding (weights, gradients and optimizer states split across the
    processes: the path for a model that does not fit one GPU); `ddp`: a full copy per process
    (faster when the model fits). Never `nn.DataParallel`."""

    def __post_init__(self) -> None:
        for name in ("processes", "nodes"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                "strategy", f"must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}"
            )

    @property
    def world(self) -> int:
        """Training processes in all."""
        return self.processes * self.nodes


def rank_batching(per_device: int, accumulation: int, world: int) -> tuple[int, int]:
    """(per-process micro-batch, accumulation steps) that keep `per_device x accumulation`
    examples per optimizer step when `world` processes train: accumulation is divided first
    (the micro-batch, and so activation memory, stays), then the micro-batch."""
    total = per_device * accumulation
    if total % world:
        raise ConfigError(
            "train.per_device_batch_size",
            f"the batch per optimizer step, per_device_batch_size x gradient_accumulation_steps "
            f"= {per_device} x {accumulation} = {total}, must split evenly over {world} "
            "training processes; change either, or the processes",
        )
    if accumulation % world == 0:
        return per_device, accumulation // world
    share = total // world
    micro = max(d for d in range(1, min(per_device, share) + 1) if share % d == 0)
    return micro, share // micro


@dataclass(frozen=True)
class Rank:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    node: int = 0

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> Rank:
        """From torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, GROUP_RANK)."""
        env = os.environ
        if not under_torchrun():
            return cls()
        return cls(
            int(env["RANK"]),
            int(env["WORLD_SIZE"]),
            int(env.get("LOCAL_RANK", "0")),
            int(env.get("GROUP_RANK", "0")),
        )

    def announce(self, message: dict[str, Any] | None) -> None:
        """Rank 0: tell every rank what to do (None: nothing, the output is done or gated)."""
        if self.world > 1:
            _broadcast(message)

    def gather_roots(self, root: str | None) -> str:
        """Every rank: the training directory of this rank's node (rank 0's staging directory
        on its node, a node-local copy elsewhere)."""
        if self.world == 1:
            assert root is not None
            return root
        import torch.distributed as dist

        found: list[Any] = [None] * self.world
        dist.all_gather_object(found, (self.node, root))
        return next(r for n, r in found if n == self.node and r is not None)


def under_torchrun() -> bool:
    """Whether this process is one of torchrun's workers."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def init_process_group() -> None:
    """Join the training processes: NCCL on GPUs, gloo on CPU (accelerate reuses the group)."""
    import datetime

    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    else:
        # Resuming on several CPU processes, transformers 5.17 loads the optimizer state with
        # map_location=args.device, which accelerate makes torch.device("cpu", index) there;
        # torch's own CPU deserializer accepts only the location "cpu" and fails on "cpu:0".
        # This one takes "cpu:N" as the CPU (torch.serialization.register_package, public API).
        torch.serialization.register_package(11, lambda obj: None, _indexed_cpu)
    dist.init_process_group(
        backend="nccl" if torch.cuda.is_available() else "gloo",
        timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S),
    )


def _indexed_cpu(storage: Any, location: str) -> Any:
    return storage if location.startswith("cpu:") else None


def _broadcast(message: dict[str, Any] | None) -> dict[str, Any] | None:
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def trainer_args(
    distributed: DistributedConfig,
    per_device: int,
    accumulation: int,
    world: int,
    on_gpu: bool = True,
    lora: bool = False,
) -> dict[str, Any]:
    """TrainingArguments for `world` processes (nothing to change for one). FSDP needs GPUs:
    accelerate 1.15 shards only on accelerator devices (accelerate/state.py, `AcceleratorState`:
    the FSDP plugin is applied for MULTI_GPU and the like, never MULTI_CPU), so processes on CPU
    train with DDP, whatever the strategy. LoRA trains with DDP too: each process holds the
    frozen base (the memory plan offers LoRA only where the base fits one GPU), and FSDP would
    have to shard a bf16 base beside fp32 adapters."""
    if world == 1:
        return {}
    micro, steps = rank_batching(per_device, accumulation, world)
    args: dict[str, Any] = {
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": steps,
        "ddp_timeout": COLLECTIVE_TIMEOUT_S,
        "ddp_find_unused_parameters": False,  # every weight gets a gradient
    }
    if distributed.strategy == "fsdp" and not on_gpu:
        log.warning("FSDP needs GPUs; %d CPU processes train with DDP", world)
    elif distributed.strategy == "fsdp" and not lora:
        args["fsdp"] = "full_shard auto_wrap"
        args["fsdp_config"] = {
            "version": 2,
            # Checkpoints hold the whole model (gathered on rank 0): a run resumes on any
            # number of processes, and the final checkpoint loads as a plain model.
            "state_dict_type": "FULL_STATE_DICT",
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "reshard_after_forward": True,
        }
    return args


def follow(
    rank: Rank,
    prepare: Callable[[dict[str, Any]], Path],
    run: Callable[[dict[str, Any], Path], None],
    release: Callable[[Path], None],
) -> dict[str, Any]:
    """A rank other than 0: wait for rank 0's word, then train alongside it. `prepare` (called
    on each node's local rank 0 away from rank 0's node) makes the node's copy of the committed
    pieces, which it `release`s once trained; `run` trains in the directory given."""
    message = _broadcast(None)
    if message is None:
        return {"rank": rank.rank, "trained": False}
    copy = None
    if rank.local_rank == 0 and rank.node != message["node"]:
        copy = prepare(message)
    root = message["root"] if rank.local_rank == 0 and copy is None else copy
    directory = Path(rank.gather_roots(None if root is None else str(root)))
    run(message, directory)
    if copy is not None:  # the node's ranks are done with it: only rank 0 saves anything
        release(copy)
    return {"rank": rank.rank, "trained": True}


# ----------------------------------------------------------------------------- one pod


def launch(dataset: str, out: str, config: Any, force: bool, processes: int) -> dict[str, Any]:
    """Run the train step in `processes` processes under torchrun on this machine; rank 0
    commits the output. Returns rank 0's summary (what the one-process step would return)."""
    from satk8s.store.identity import plain_config

    with tempfile.TemporaryDirectory(prefix="satk8s-train-") as tmp:
        request = Path(tmp) / "request.json"
        result = Path(tmp) / "summary.json"
        body = {
            "dataset": dataset,
            "out": out,
            "config": plain_config(config),
            "force": force,
            "result": str(result),
        }
        request.write_text(json.dumps(body))
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "-m",
            "satk8s.training.distributed",
            str(request),
        ]
        log.info("training in %d processes: %s", processes, " ".join(command))
        # torchrun ends every worker when one fails (a fault, a preemption): the step then
        # fails and its rerun resumes from the last committed checkpoint.
        code = subprocess.call(command, env=_worker_env(processes))
        if code != 0 or not result.is_file():
            raise Satk8sError(
                f"train: torchrun with {processes} processes exited with code {code}; the "
                "ranks' errors are above. A rerun resumes from the last committed checkpoint."
            )
        return json.loads(result.read_text())


def _worker_env(processes: int) -> dict[str, str]:
    """This process's environment with its CPU threads shared out among the workers: the step
    set them for one process (`satk8s.threads`), and every worker would start as many."""
    from satk8s.threads import ENV, THREAD_ENV

    threads = os.environ.get("OMP_NUM_THREADS", "")
    share = str(max(1, int(threads) // processes)) if threads.isdigit() else "1"
    return {**os.environ, **dict.fromkeys((ENV, *THREAD_ENV), share)}


def _main(request_file: str) -> None:
    """A torchrun worker of `launch`: runs the train step as its rank."""
    from satk8s.config import build_config
    from satk8s.steps.train import TrainStepConfig, train_model
    from satk8s.threads import limit_threads

    limit_threads()
    request = json.loads(Path(request_file).read_text())
    config = build_config(TrainStepConfig, base=request["config"])
    summary = train_model(request["dataset"], request["out"], config, request["force"])
    if Rank.current().is_zero:
        Path(request["result"]).write_text(json.dumps(summary, default=str))


if __name__ == "__main__":
    _main(sys.argv[1])
