"""A grid compiled for a cluster: the cluster settings decide its store and what its pods get.

`load_cluster_plan(name, overrides, settings)` is `load_plan` for a cluster prepared by the
chart (`satk8s.cluster.settings.ClusterSettings`):

- the store: the settings' `storeRoot`, unless an override sets `store.root` (overrides still
  win); with neither, or with a local path or a placeholder, it fails before anything is
  compiled, saying how to set one;
- every role's pods get the chart's Secrets by name (the S3 keys, the hub token) and the store's
  endpoint, region and addressing style as SATK8S_S3_* variables; the role that runs an external
  judge gets the judge's API key. Names and keys come from the settings, none from
  `pipelines/conf/`.

A local run (`satk8s run --local`, `make demo`) never comes here: it has no cluster settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from satk8s.cluster.settings import ClusterSettings, cluster_store
from satk8s.grid.config import ComputeConfig, GridConfig, SecretEnv, load_grid
from satk8s.grid.expand import expand
from satk8s.grid.plan import Plan

STORE_ENV = {
    "s3_endpoint_url": "SATK8S_S3_ENDPOINT_URL",
    "s3_region": "SATK8S_S3_REGION",
    "s3_addressing_style": "SATK8S_S3_ADDRESSING_STYLE",
}
"""Settings field -> the variable `satk8s.store.settings` reads it from in a step."""

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


def for_cluster(grid: GridConfig, settings: ClusterSettings) -> GridConfig:
    """`grid` with the settings' Secrets and store endpoint added to its compute profiles.

    GPU pools (`settings.gpu_pools`) and their Kueue queues are not applied to roles yet: GPU
    roles select nodes by the compute profile's own node selector."""
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
    return dataclasses.replace(grid, compute=compute)


def load_cluster_plan(name: str, overrides: Sequence[str], settings: ClusterSettings) -> Plan:
    """Grid `name` with `overrides`, checked end to end, as the DAG a cluster runs."""
    grid = load_grid(name, [*store_override(settings), *overrides])
    root = cluster_store(grid.store.root, settings)
    grid = dataclasses.replace(grid, store=dataclasses.replace(grid.store, root=root))
    return expand(for_cluster(grid, settings))


__all__ = ["STORE_ENV", "for_cluster", "load_cluster_plan", "shared_secrets", "store_override"]
