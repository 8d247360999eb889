"""Compute presets resolved for one grid: where each GPU role runs and what its pods request.

A preset (`pipelines/conf/compute/{gke,eks,aks,generic}.yaml`) names a cloud and a GPU type
(`compute.cloud`, `compute.gpu`, from `satk8s/cluster/gpus.yaml`) and leaves a role's `cpu`,
`memory`, `shm_size` and `scratch_size` at "auto". Here they become numbers:

- placement: a GPU role without a node selector or affinity of its own gets the cloud's GPU
  label for the type (one value: a node selector; several node types: a node affinity `In`);
- cpu: `CPU_PER_GPU` per GPU, or less where the type's smallest supported node shape has less
  per GPU (g5.2xlarge and g2-standard-8 leave about 7);
- memory: what the role holds in host memory at its peak, from the model's parameter count
  (`HOST_BYTES_PER_PARAM`), plus `BASE_MEMORY_GIB`, plus the memory-backed /dev/shm, which
  Kubernetes charges to the pod's memory (https://kubernetes.io/docs/concepts/storage/volumes/#emptydir:
  "files you write count against your container's memory limit");
- scratch: what the role writes to local disk (`SCRATCH_BYTES_PER_PARAM`): the model fetched from
  the store, and for `train` two checkpoints (the trainer writes the next before it drops the
  last) and the final bf16 model.

`check_fit` then says which roles of the plan do not fit the GPU type's node shapes, and fails
when they do not fit the shape the grid chose (`compute.shape`); it also says when a role's
model does not fit its GPUs' memory (a full fine-tune of a 1.7B model on a 24 GB GPU).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

from satk8s.cluster.gpus import catalogue
from satk8s.cluster.quantity import parse_quantity
from satk8s.cluster.shapes import misfit, per_pod_budget
from satk8s.errors import ConfigError
from satk8s.grid.config import ComputeConfig, ComputeProfile, GridConfig, NodeAffinityTerm

AUTO = "auto"

CPU_PER_GPU = 8
"""CPUs a GPU task wants per GPU: tokenisation, data loading and vLLM's scheduler."""
BASE_MEMORY_GIB = 4
"""Host memory of a GPU task besides the model: Python, CUDA context, libraries, batches."""
HOST_BYTES_PER_PARAM = {
    "train": 6,  # the weights loaded in float32 (4 bytes) and their bf16 copy when saved (2)
    "generate": 2,  # bf16 weights pass through host memory as they load
    "judge": 2,
    "external_judge": 2,
    "evaluate": 2,
    "cpu": 2,  # staging the hub model; the length and logprob controls load its tokenizer
}
SCRATCH_BYTES_PER_PARAM = {
    # the bf16 input model, two checkpoints (float32 weights and AdamW's two float32 moments:
    # 12 bytes each) and the bf16 final model
    "train": 2 + 2 * 12 + 2,
    "generate": 2,
    "judge": 2,
    "external_judge": 2,
    "evaluate": 2,
    "cpu": 2,
}
SCRATCH_BASE_GIB = 4
"""Scratch besides the model: compile caches (triton, vLLM), step outputs before upload."""
TINY_PARAMS = 1_000_000
"""An upper bound for the tiny embedded model (about 130K parameters)."""


def shm_gib(gpus: int) -> int:
    """/dev/shm for a task of `gpus` GPUs: data loader workers, and the tensor-parallel
    workers' shared-memory transport."""
    return 1 + gpus


def cpu_per_gpu(gpu: str) -> int:
    """`CPU_PER_GPU`, or the whole CPUs per GPU the type's smallest supported shape leaves."""
    budgets = [per_pod_budget(s, 1) for s in catalogue().shapes_for(gpu)]
    room = [math.floor(b.cpu) for b in budgets if b is not None]
    return max(1, min([CPU_PER_GPU, *room]))


def model_params(grid: GridConfig, role: str) -> int | None:
    """Parameters of the model a role's tasks load: the external judge's for that role, the
    policy's for every other; None when its size is not known here."""
    from satk8s.grid.cost import model_shape

    if role == "external_judge":
        if grid.signal.external_judge.get("kind") not in ("hf", "vllm"):
            return 0  # an endpoint (openai) or a program (oracle): no weights in the pod
        model = str(grid.signal.external_judge.get("model") or "")
    elif grid.model.tiny:
        return TINY_PARAMS
    else:
        model = grid.model.path
    shape = model_shape(model) if model else None
    return shape.params if shape is not None else None


def _gib(n_bytes: float) -> int:
    return math.ceil(n_bytes / 2**30)


def _needs(profile: ComputeProfile) -> list[str]:
    return [
        name
        for name in ("cpu", "memory", "shm_size", "scratch_size")
        if getattr(profile, name) == AUTO
    ]


def resolve_profile(grid: GridConfig, role: str) -> ComputeProfile:
    """`role`'s profile with every "auto" replaced and the preset's placement applied."""
    compute = grid.compute
    profile: ComputeProfile = getattr(compute, role)
    gpus = profile.accelerator_count
    auto = _needs(profile)
    changes: dict[str, Any] = {}
    if auto:
        params = model_params(grid, role)
        if params is None:
            model = grid.signal.external_judge.get("model") if role == "external_judge" else ""
            fields = ", ".join(f"compute.{role}.{name}" for name in auto)
            raise ConfigError(
                f"compute.{role}.{auto[0]}",
                f"'auto' needs the size of model '{model or grid.model.path}', which satk8s "
                f"does not know; set {fields} yourself",
            )
        shm = shm_gib(gpus) if gpus else 0
        if profile.shm_size not in ("", AUTO):
            shm = math.ceil(parse_quantity(profile.shm_size) / 2**30)
        if "cpu" in auto:
            if not gpus:
                raise ConfigError(f"compute.{role}.cpu", "'auto' is for GPU roles; give a number")
            changes["cpu"] = str(cpu_per_gpu(_gpu_type(compute, role)) * gpus)
        if "shm_size" in auto:
            changes["shm_size"] = f"{shm}Gi" if shm else ""
        if "memory" in auto:
            host = HOST_BYTES_PER_PARAM[role] * params
            changes["memory"] = f"{BASE_MEMORY_GIB + _gib(host) + shm}Gi"
        if "scratch_size" in auto:
            scratch = SCRATCH_BYTES_PER_PARAM[role] * params
            changes["scratch_size"] = f"{SCRATCH_BASE_GIB + _gib(scratch)}Gi"
    if gpus and compute.cloud and not profile.node_selector and not profile.node_affinity:
        where = catalogue().placement(compute.cloud, _gpu_type(compute, role))
        changes["node_selector"] = where.node_selector
        changes["node_affinity"] = [NodeAffinityTerm(**t) for t in where.node_affinity]
    return dataclasses.replace(profile, **changes)


def _gpu_type(compute: ComputeConfig, role: str) -> str:
    if not compute.gpu:
        raise ConfigError(
            "compute.gpu",
            f"role '{role}' is placed and sized by GPU type; name one, e.g. compute.gpu=h100-80gb "
            f"(known: {', '.join(catalogue().gpus)})",
        )
    return catalogue().gpu(compute.gpu).name


def resolve_compute(grid: GridConfig, roles: Iterable[str]) -> GridConfig:
    """The grid with the profiles of `roles` (those with tasks) resolved (`resolve_profile`);
    a role without tasks keeps its "auto" fields, which nothing reads."""
    profiles = {role: resolve_profile(grid, role) for role in dict.fromkeys(roles)}
    return dataclasses.replace(grid, compute=dataclasses.replace(grid.compute, **profiles))


def check_fit(grid: GridConfig, roles: Iterable[str]) -> list[str]:
    """Which of `roles` (those with tasks) do not fit a node shape: a ConfigError naming them
    when `compute.shape` is set, else one note per role that fits none of the GPU type's
    supported shapes."""
    compute = grid.compute
    gpu_roles = [r for r in dict.fromkeys(roles) if getattr(compute, r).accelerator_count > 0]
    if compute.shape:
        shape = catalogue().shape(compute.shape)
        problems = [f"{r}: {why}" for r in gpu_roles if (why := _misfit(compute, r, shape))]
        if problems:
            raise ConfigError(
                "compute.shape",
                f"roles that do not fit {shape.name}: {'; '.join(problems)}. Pick a larger "
                "shape, or set the role's cpu/memory (compute.<role>.memory=...)",
            )
        return []
    if not compute.gpu:
        return []
    shapes = catalogue().shapes_for(compute.gpu)
    notes = _gpu_memory_notes(grid, gpu_roles)
    for role in gpu_roles:
        failures = [(s.name, why) for s in shapes if (why := _misfit(compute, role, s))]
        if shapes and len(failures) == len(shapes):
            notes.append(
                f"role {role} fits none of the {compute.gpu} node shapes satk8s knows: "
                + "; ".join(f"{name}: {why}" for name, why in failures)
            )
    return notes


def _gpu_memory_notes(grid: GridConfig, roles: list[str]) -> list[str]:
    """Inference roles whose model's bf16 weights do not fit their GPUs' memory. Training is
    not noted here: compiling refuses a train profile that cannot hold the model, naming what
    would fit (`satk8s.grid.expand`, `satk8s.grid.cost.node_train_memory`)."""
    gpu = catalogue().gpu(grid.compute.gpu)
    notes = []
    for role in roles:
        params = model_params(grid, role)
        if role == "train" or not params:
            continue
        need = params * 2
        gpus = getattr(grid.compute, role).accelerator_count
        if need > gpus * gpu.memory_gb * 1e9:
            notes.append(
                f"role {role}: the model's bf16 weights need about {need / 1e9:.0f} GB, more "
                f"than {gpus} x {gpu.name} ({gpus * gpu.memory_gb:g} GB); a larger compute.gpu"
            )
    return notes


def _misfit(compute: ComputeConfig, role: str, shape: Any) -> str | None:
    profile: ComputeProfile = getattr(compute, role)
    if profile.cpu == AUTO or profile.memory == AUTO:
        return None
    memory = parse_quantity(profile.memory) / 2**30
    return misfit(shape, profile.accelerator_count, parse_quantity(profile.cpu), memory)


__all__ = [
    "AUTO",
    "CPU_PER_GPU",
    "check_fit",
    "cpu_per_gpu",
    "model_params",
    "resolve_compute",
    "resolve_profile",
    "shm_gib",
]
