"""A grid compiled for a cluster: the cluster settings decide its store and what its pods get.

`load_cluster_plan(name, overrides, settings)` is `load_plan` for a cluster prepared by the
chart (`satk8s.cluster.settings.ClusterSettings`):

- the store: the settings' `storeRoot`, unless an override sets `store.root` (overrides still
  win); with neither, or with a local path or a placeholder, it fails before anything is
  compiled, saying how to set one;
- every role's pods get the chart's Secrets by name (the S3 keys, the hub token) and the store's
  endpoint, region and addressing style as SATK8S_S3_* variables; the role that runs an external
  judge gets the judge's API key. Names and keys come from the settings, none from
  `pipelines/conf/`;
- GPU pools: when the settings list `gpuPools`, every GPU role without a node selector of its
  own runs on the pool of the grid's GPU type (`compute.gpu`): the pool's node labels, its
  tolerations, and with Kueue its LocalQueue as the `kueue.x-k8s.io/queue-name` pod label
  (CPU roles join `cpuQueue`); a role with a Kueue priority class in the settings carries it as
  `kueue.x-k8s.io/priority-class`. Kueue's pod integration queues pods by these labels
  (kubernetes-sigs/kueue site/content/en/docs/tasks/run/plain_pods.md, "Queue selection";
  concepts/workload_priority_class.md); KFP 2.17 puts a task's pod labels on its executor pod
  (kubeflow/pipelines@2.17.0:backend/src/v2/compiler/argocompiler/container.go,
  extendPodMetadata), as Kueue's Argo Workflows page asks (tasks/run/external_workloads/
  argo_workflow.md, "a different LocalQueue per template").

A local run (`satk8s run --local`, `make demo`) never comes here: it has no cluster settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from satk8s.cluster.settings import ClusterSettings, GpuPool, cluster_store
from satk8s.errors import ConfigError
from satk8s.grid.config import (
    ComputeConfig,
    ComputeProfile,
    GridConfig,
    SecretEnv,
    Toleration,
    load_grid,
)
from satk8s.grid.expand import QUEUE_LABEL, expand
from satk8s.grid.plan import ROLES, Plan

STORE_ENV = {
    "s3_endpoint_url": "SATK8S_S3_ENDPOINT_URL",
    "s3_region": "SATK8S_S3_REGION",
    "s3_addressing_style": "SATK8S_S3_ADDRESSING_STYLE",
}
"""Settings field -> the variable `satk8s.store.settings` reads it from in a step."""

PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
"""The label that names a Kueue WorkloadPriorityClass
(kubernetes-sigs/kueue site/content/en/docs/concepts/workload_priority_class.md)."""

JUDGE_ROLE = "external_judge"
"""The compute role of an external judge that calls an endpoint (`satk8s.grid.expand`)."""


def store_override(settings: ClusterSettings) -> list[str]:
    """The override that makes the settings' store the grid's; placed before the user's
    overrides, so a `store.root=…` of theirs wins."""
    return [f"store.root={settings.store_root}"] if settings.store_root else []


def shared_secrets(settings: ClusterSettings) -> list[SecretEnv]:
    """The chart's Secrets every role gets, optional so a pod still starts while one is being
    created (the doctor reports a missing one; KFP >= 2.15 honours `optional`)."""
    secrets = []
    if settings.s3_secret:
        env = {
            settings.s3_access_key_key: "AWS_ACCESS_KEY_ID",
            settings.s3_secret_key_key: "AWS_SECRET_ACCESS_KEY",
        }
        secrets.append(SecretEnv(settings.s3_secret, env, optional=True))
    if settings.hub_token_secret:
        env = {settings.hub_token_key: "HF_TOKEN"}
        secrets.append(SecretEnv(settings.hub_token_secret, env, optional=True))
    return secrets


def pool_for(settings: ClusterSettings, gpu: str) -> GpuPool:
    """The settings' first GPU pool of GPU type `gpu`; a ConfigError naming the pools when
    none is."""
    for pool in settings.gpu_pools:
        if pool.gpu == gpu:
            return pool
    listed = ", ".join(f"{p.name} ({p.gpu or 'no gpu type'})" for p in settings.gpu_pools)
    raise ConfigError(
        "compute.gpu",
        f"'{gpu or '(none)'}': {settings.source} lists GPU pools {listed} but none of this GPU "
        "type; compile with compute.gpu=<the type of a pool>, or add the pool to the chart's "
        "gpuPools",
    )


def _placed(
    profile: ComputeProfile, role: str, pool: GpuPool | None, settings: ClusterSettings
) -> ComputeProfile:
    """`profile` on `pool` (GPU roles without placement of their own) and in the settings'
    Kueue queue and priority class."""
    changes: dict[str, object] = {}
    labels = dict(profile.pod_labels)
    queue = settings.cpu_queue
    if pool is not None:
        queue = pool.local_queue
        if not profile.node_selector and not profile.node_affinity:
            changes["node_selector"] = dict(pool.node_labels)
            if pool.tolerations:
                changes["tolerations"] = [
                    Toleration(**{k: str(v) for k, v in t.items() if k in TOLERATION_KEYS})
                    for t in pool.tolerations
                ]
    if queue:
        labels.setdefault(QUEUE_LABEL, queue)
        if priority := settings.priority_classes.get(role):
            labels.setdefault(PRIORITY_LABEL, priority)
    changes["pod_labels"] = labels
    return dataclasses.replace(profile, **changes)


TOLERATION_KEYS = ("key", "operator", "value", "effect")


def for_cluster(grid: GridConfig, settings: ClusterSettings) -> GridConfig:
    """`grid` with the settings' Secrets and store endpoint added to its compute profiles, and
    its roles placed on the settings' GPU pools and Kueue queues (see the module doc)."""
    compute: ComputeConfig = grid.compute
    env = dict(compute.env)
    for name, variable in STORE_ENV.items():
        if value := getattr(settings, name):
            env.setdefault(variable, value)
    judge_role = getattr(compute, JUDGE_ROLE)
    if settings.judge_api_key_secret:
        api_key_env = str(grid.signal.external_judge.get("api_key_env") or "OPENAI_API_KEY")
        judge = SecretEnv(
            settings.judge_api_key_secret, {settings.judge_api_key_key: api_key_env}, True
        )
        judge_role = dataclasses.replace(judge_role, secrets=[*judge_role.secrets, judge])
    compute = dataclasses.replace(
        compute,
        shared_secrets=[*shared_secrets(settings), *compute.shared_secrets],
        env=env,
        **{JUDGE_ROLE: judge_role},
    )
    placed = {}
    for role in ROLES:
        profile: ComputeProfile = getattr(compute, role)
        gpus = profile.accelerator_count > 0
        pool = pool_for(settings, compute.gpu) if gpus and settings.gpu_pools else None
        placed[role] = _placed(profile, role, pool, settings)
    return dataclasses.replace(grid, compute=dataclasses.replace(compute, **placed))


def load_cluster_plan(name: str, overrides: Sequence[str], settings: ClusterSettings) -> Plan:
    """Grid `name` with `overrides`, checked end to end, as the DAG a cluster runs."""
    grid = load_grid(name, [*store_override(settings), *overrides])
    root = cluster_store(grid.store.root, settings)
    grid = dataclasses.replace(grid, store=dataclasses.replace(grid.store, root=root))
    return expand(for_cluster(grid, settings))


__all__ = [
    "PRIORITY_LABEL",
    "STORE_ENV",
    "for_cluster",
    "load_cluster_plan",
    "pool_for",
    "shared_secrets",
    "store_override",
]
