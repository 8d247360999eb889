"""Per-task state of a run on a Kubeflow Pipelines server, for `satk8s runs watch`.

Everything comes from one request, GET /apis/v2beta1/runs/{id} (`kfp.Client.get_run`): the
run's state and its `run_details.task_details`. What KFP 2.17 puts there, from its source
(`backend/src/apiserver/server/api_converter.go` `toModelTask` / `toApiPipelineTaskDetail`, and
`backend/src/common/util/workflow.go` `NodeStatuses`, all at tag 2.17.0):

- one task detail per node of the run's Argo workflow: `display_name` is the node's display
  name, `state` its phase as a v2beta1 RuntimeState (Pending, Running, Succeeded, Skipped;
  Failed and Error both FAILED), `start_time`/`end_time` its times, and `child_tasks` the ids of
  its child nodes, each in a field named `pod_name` (run.proto: "Also known as node_id");
- no node id, pod name or error of the task itself (the converter leaves `pod_name` and
  `error` empty).

The workflow comes from KFP's Argo compiler (`backend/src/v2/compiler/argocompiler/dag.go` and
`container.go`): every pipeline task T becomes a driver pod node `T-driver`, then a DAG node
`T` whose one child, `executor`, is the pod that runs the component (a Retry node with one pod
per attempt when the task has a retry policy). When KFP's cache has T's outputs, the driver says
so and the `executor` child is skipped while `T` still succeeds.

So a task's state is its `T` node's state (pending until that node exists, failed if its
driver failed). A cached task is a succeeded `T` next to a skipped `executor`; since task
details carry no ids to join them by, a skipped `executor` is matched to the `T` that finished
in the same second (Argo completes the DAG node in the pass that skips its only child). satk8s's
own pipelines switch KFP's cache off (the store is the cache), so their store cache hits show as
succeeded tasks.

A failed task's pod name follows Argo's default (v2) pod names the way KFP's own
`RetrievePodName` (workflow.go) derives them: `<workflow>-<template>-<hash>`, from the node id
`<workflow>-<hash>` and the executor template `system-container-impl` (`retry-` before it for a
task with a retry policy, `metadata-<annotations>-<labels>-` before that for one with pod
metadata: container.go `addContainerExecutorTemplate`). For a retried task the API names only
the Retry node, not its pods; every pod of a run carries the label `pipeline/runid=<run id>`
(`backend/src/apiserver/template/argo_template.go`), which always finds them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from satk8s.orchestration.kfp_client import KfpError, KfpSettings, RunInfo, connect, run_details

if TYPE_CHECKING:
    import kfp

FINISHED_TASK_STATES = frozenset({"succeeded", "cached", "failed", "skipped", "canceled"})
EXECUTOR_NODE = "executor"
DRIVER_SUFFIX = "-driver"
CONTAINER = "main"
"""The container Argo gives a template's container, the one whose log is the component's."""
_STATES = {
    "PENDING": "pending",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "SKIPPED": "skipped",
    "FAILED": "failed",
    "CANCELING": "canceled",
    "CANCELED": "canceled",
    "PAUSED": "pending",
}


@dataclasses.dataclass(frozen=True)
class TaskState:
    """One pipeline task of a run, as the KFP API shows it."""

    task: str
    """The task's key in the pipeline spec (also its Argo DAG task name), e.g. `train-3`."""
    name: str
    """Its display name (`taskInfo.name`: the plan node id for satk8s pipelines)."""
    state: str
    """pending, running, succeeded, cached, failed, skipped or canceled."""
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    pod: str | None = None
    """The failed executor's pod, when the API gives enough to name it."""
    failed_in: str = ""
    """For a failed task: `executor`, or `driver` when KFP's driver failed before it ran."""

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return max((self.finished - self.started).total_seconds(), 0.0)


@dataclasses.dataclass(frozen=True)
class RunSnapshot:
    run: RunInfo
    tasks: tuple[TaskState, ...]
    workflow: str = ""
    """The Argo workflow's name, when a node id showed it."""

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.tasks)

    @property
    def failed(self) -> list[TaskState]:
        return [t for t in self.tasks if t.state == "failed"]


def snapshot(run: RunInfo, raw: Mapping[str, Any]) -> RunSnapshot:
    """The run's pipeline tasks and their states, from the server's v2beta1 Run (a dict)."""
    details = list((raw.get("run_details") or {}).get("task_details") or [])
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for detail in details:
        by_name.setdefault(str(detail.get("display_name") or ""), []).append(detail)
    spec, platform = _specs(raw.get("pipeline_spec"))
    names = _task_names(spec, by_name)
    skipped_executors = [
        _time(d.get("end_time"))
        for d in by_name.get(EXECUTOR_NODE, [])
        if d.get("state") == "SKIPPED"
    ]
    workflow = ""
    tasks: list[TaskState] = []
    for task, name in names.items():
        node = (by_name.get(task) or [None])[0]
        driver = (by_name.get(task + DRIVER_SUFFIX) or [None])[0]
        if node is None:
            failed = driver is not None and _STATES.get(str(driver.get("state"))) == "failed"
            tasks.append(
                TaskState(
                    task,
                    name,
                    "failed" if failed else "pending",
                    _time(driver.get("start_time")) if driver else None,
                    _time(driver.get("end_time")) if failed and driver else None,
                    failed_in="driver" if failed else "",
                )
            )
            continue
        state = _STATES.get(str(node.get("state")), str(node.get("state") or "pending").lower())
        started, finished = _time(node.get("start_time")), _time(node.get("end_time"))
        if state == "succeeded" and finished is not None and finished in skipped_executors:
            skipped_executors.remove(finished)
            state = "cached"
        pod = None
        children = [c.get("pod_name") for c in node.get("child_tasks") or [] if c.get("pod_name")]
        if children:
            workflow = children[0].rsplit("-", 1)[0]
        if state == "failed" and children:
            pod = _executor_pod(children[-1], task, spec, platform)
        if state not in FINISHED_TASK_STATES:
            finished = None
        tasks.append(
            TaskState(task, name, state, started, finished, pod, "executor" * (state == "failed"))
        )
    return RunSnapshot(run, tuple(tasks), workflow)


def logs_commands(task: TaskState, run_id: str, namespace: str) -> list[str]:
    """Commands that show a failed task's log: the pod's own when its name is known, and the
    run's failed pods by label (which works whatever Argo named them)."""
    commands = []
    if task.pod:
        commands.append(f"kubectl -n {namespace} logs {task.pod} -c {CONTAINER}")
    commands.append(
        f"kubectl -n {namespace} get pods -l pipeline/runid={run_id} "
        "--field-selector=status.phase=Failed"
    )
    return commands


def watch_run(
    run_id: str,
    settings: KfpSettings,
    timeout: float | None = None,
    poll: float = 10.0,
    on_update: Callable[[RunSnapshot, RunSnapshot | None], None] | None = None,
    client: kfp.Client | None = None,
) -> RunSnapshot:
    """Poll a run until it finishes; `on_update(now, before)` sees every snapshot in which the
    run's or a task's state changed. KfpError after `timeout` seconds."""
    client = client or connect(settings)
    deadline = None if timeout is None else time.monotonic() + timeout
    before: RunSnapshot | None = None
    while True:
        info, raw = run_details(run_id, settings, client=client)
        now = snapshot(info, raw)
        if on_update is not None and _changed(now, before):
            on_update(now, before)
        before = now
        if info.finished:
            return now
        if deadline is not None and time.monotonic() >= deadline:
            raise KfpError(
                f"run {run_id} is still {info.state} after {timeout:g} s; see {info.url} "
                f"(the run goes on; `satk8s runs watch {run_id}` again)"
            )
        time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))


def _changed(now: RunSnapshot, before: RunSnapshot | None) -> bool:
    if before is None or now.run.state != before.run.state:
        return True
    return [(t.task, t.state) for t in now.tasks] != [(t.task, t.state) for t in before.tasks]


def _specs(value: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(pipeline spec, platform spec) of a run: kfp.Client sends the pipeline spec alone, or
    both under `pipeline_spec` / `platform_spec` when there is a platform spec
    (kfp/client/client.py `_JobConfig`, kfp 2.17.0)."""
    if not isinstance(value, Mapping):
        return {}, {}
    if "pipeline_spec" in value:
        return value.get("pipeline_spec") or {}, value.get("platform_spec") or {}
    return value, {}


def _task_names(
    spec: Mapping[str, Any], by_name: Mapping[str, list[Mapping[str, Any]]]
) -> dict[str, str]:
    """Pipeline task key -> display name, in the spec's order; without a spec (a run of an
    uploaded pipeline version), the task of every driver node but the root DAG's."""
    tasks = (spec.get("root") or {}).get("dag", {}).get("tasks") or {}
    if tasks:
        return {key: (t.get("taskInfo") or {}).get("name") or key for key, t in tasks.items()}
    drivers = [n.removesuffix(DRIVER_SUFFIX) for n in sorted(by_name) if n.endswith(DRIVER_SUFFIX)]
    return {name: name for name in drivers if name != "root"}


def _executor_pod(
    node_id: str, task: str, spec: Mapping[str, Any], platform: Mapping[str, Any]
) -> str | None:
    """The executor pod of a failed task from its executor node id; None for a retried task
    (its pods are the Retry node's children, which the API does not list)."""
    task_spec = ((spec.get("root") or {}).get("dag", {}).get("tasks") or {}).get(task) or {}
    if task_spec.get("retryPolicy"):
        return None
    template = "system-container-impl"
    component = (spec.get("components") or {}).get(
        (task_spec.get("componentRef") or {}).get("name", ""), {}
    )
    executors = (
        ((platform.get("platforms") or {}).get("kubernetes") or {}).get("deploymentSpec") or {}
    ).get("executors") or {}
    metadata = (executors.get(component.get("executorLabel", "")) or {}).get("podMetadata")
    if metadata:
        annotations, labels = (
            len(metadata.get("annotations") or {}),
            len(metadata.get("labels") or {}),
        )
        template = f"metadata-{annotations}-{labels}-{template}"
    workflow, _, hash_ = node_id.rpartition("-")
    return f"{workflow}-{template}-{hash_}" if workflow and hash_ else None


def _time(value: Any) -> dt.datetime | None:
    """A task time; KFP writes the Unix epoch for a time not reached yet."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, dt.datetime) or value.timestamp() <= 0:
        return None
    return value


__all__ = [
    "FINISHED_TASK_STATES",
    "RunSnapshot",
    "TaskState",
    "logs_commands",
    "snapshot",
    "watch_run",
]
