"""A grid expanded into one static DAG: the contract between grid expansion (`satk8s.grid`)
and the pipeline builder (`pipelines/`).

Every node is one step run at its content address (`satk8s.orchestration.addressed`): the
node carries the step's fully resolved config, and names its upstream nodes per input. Shared
upstream work (prepare, generate, saturate, each signal) appears once however many cells use
it; build/train/evaluate appear once per cell; the base-model evaluation once; one report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("generate", "judge", "external_judge", "train", "evaluate", "cpu")
"""Compute profiles, one per step role (accelerators, cpu/memory, node pool, secrets)."""


@dataclass(frozen=True)
class Node:
    id: str
    """Unique and stable within the plan, e.g. `generate`, `signal-entropy`,
    `train-dpo-entropy-s0`; also the KFP task's display name."""
    step: str
    """A key of `satk8s.steps.STEPS`."""
    role: str
    """One of ROLES: picks the compute profile."""
    config: dict[str, Any]
    """The step's resolved config (`resolve_config`), JSON data."""
    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Step input name -> ids of the upstream nodes whose output locations feed it (several
    are joined with commas, the way steps take multiple locations)."""
    model_from: str | None = None
    """Id of a node (the `tiny` step) whose output location becomes this step's `model`
    config field at run time, before its address is computed; None keeps `config["model"]`."""


@dataclass(frozen=True)
class Cell:
    signal: str
    """A signal name, or "none" for the signal-free `sft` baseline."""
    algorithm: str
    seed: int
    evaluate_node: str
    """Id of the node that evaluates this cell's trained model."""


@dataclass(frozen=True)
class Plan:
    grid: str
    nodes: tuple[Node, ...]
    """In topological order: every node comes after all nodes it reads from."""
    cells: tuple[Cell, ...]
    store_root: str
    """Default store root (file://… or s3://…); a pipeline parameter can override it."""
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Role -> compute profile (accelerator type/count, cpu, memory, node_selector,
    tolerations, shm_size, secrets, retries); the dict's shape is documented at
    `satk8s.grid.expand.profile_dict`."""
    naive_step_count: int = 0
    """How many step runs a separate pipeline per cell would need (for `grid show`)."""
    naive_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """`naive_step_count` split by step name and role: step -> role -> step runs."""
    gpu_lanes: int = 0
    """When > 0, the GPU tasks run in this many chains (each waits for the one before it in its
    chain), so at most this many run at once; 0: no cap (`compute.max_gpu_tasks`)."""
    notes: tuple[str, ...] = ()
    """What compile and show should say about the plan (roles that fit no node shape)."""

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)
