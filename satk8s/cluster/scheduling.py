"""Will a compiled pipeline's pods find a node? The scheduler's filters, as Kubernetes
documents them, applied to what a KFP 2.17 executor pod of each task asks for.

What a task's pod asks for comes from the compiled package (`task_needs`), the way KFP 2.17's
driver builds the pod (kubeflow/pipelines@2.17.0:backend/src/v2/driver/driver.go: CPU and memory
requests and limits from `resourceCpuRequest`/`resourceMemoryRequest`, the accelerator as a
limit of its resource type; backend/src/v2/driver/k8s.go: node selector, node affinity (each
term one NodeSelectorTerm), tolerations, emptyDir mounts with their size limits, generic
ephemeral volumes).

A node can run it (`misfit`) when, as the scheduler checks
(https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/ and
https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/):
- it is Ready and not cordoned;
- its labels match every nodeSelector entry and at least one required node-affinity term
  (all of a term's expressions);
- every NoSchedule and NoExecute taint of it is tolerated;
- its allocatable CPU, memory and extended resources (GPUs) hold the requests (other pods are
  not subtracted: this asks whether the pod could ever run there).
The scheduler does not count an emptyDir's size limit; the kubelet evicts a pod whose emptyDir
outgrows it or a node whose disk fills, so the size limits are held against the node's
allocatable ephemeral storage too (https://kubernetes.io/docs/concepts/storage/volumes/#emptydir,
https://kubernetes.io/docs/concepts/scheduling-eviction/node-pressure-eviction/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from satk8s.cluster.quantity import parse_quantity

GIB = 2**30


@dataclass(frozen=True)
class TaskNeeds:
    """What one task's pod asks of a node."""

    name: str
    """The task's display name (the plan node id)."""
    image: str
    cpu: float = 0.0
    memory: float = 0.0
    """Bytes."""
    extended: Mapping[str, float] = field(default_factory=dict)
    """Extended resources (e.g. nvidia.com/gpu) -> count."""
    ephemeral: float = 0.0
    """Bytes of the pod's disk-backed emptyDir size limits."""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    affinity: tuple[tuple[Mapping[str, Any], ...], ...] = ()
    """Required node-affinity terms (ORed), each a tuple of match expressions (ANDed)."""
    tolerations: tuple[Mapping[str, Any], ...] = ()

    @property
    def gpus(self) -> float:
        return sum(v for k, v in self.extended.items() if k.endswith("/gpu"))

    def placement_key(self) -> str:
        """Tasks with equal keys fit the same nodes."""
        import json

        parts = [self.cpu, self.memory, dict(self.extended), self.ephemeral]
        parts += [dict(self.node_selector), self.affinity, self.tolerations, self.image]
        return json.dumps(parts, sort_keys=True, default=str)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    labels: Mapping[str, str]
    allocatable: Mapping[str, str]
    taints: tuple[Mapping[str, Any], ...] = ()
    ready: bool = True
    unschedulable: bool = False

    def quantity(self, resource: str) -> float:
        value = self.allocatable.get(resource)
        return parse_quantity(value) if value not in (None, "") else 0.0


def _memory(resources: Mapping[str, Any]) -> float:
    if quantity := resources.get("resourceMemoryRequest"):
        return parse_quantity(quantity)
    return float(resources.get("memoryRequest") or 0) * 1e9  # KFP's deprecated GB field


def _cpu(resources: Mapping[str, Any]) -> float:
    if quantity := resources.get("resourceCpuRequest"):
        return parse_quantity(quantity)
    return float(resources.get("cpuRequest") or 0)


def task_needs(spec: Mapping[str, Any], platform: Mapping[str, Any] | None) -> list[TaskNeeds]:
    """Every task of a compiled pipeline (its first two YAML documents) with what its pod asks."""
    executors = spec["deploymentSpec"]["executors"]
    k8s = ((platform or {}).get("platforms") or {}).get("kubernetes") or {}
    k8s_executors = (k8s.get("deploymentSpec") or {}).get("executors") or {}
    needs = []
    for task in spec["root"]["dag"]["tasks"].values():
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        container = executors[label]["container"]
        resources = container.get("resources") or {}
        extended = {}
        if accelerator := resources.get("accelerator"):
            kind = accelerator.get("resourceType") or accelerator.get("type")
            count = accelerator.get("resourceCount") or accelerator.get("count")
            if kind and count:
                extended[kind] = float(count)
        config = k8s_executors.get(label) or {}
        ephemeral = sum(
            parse_quantity(m["sizeLimit"])
            for m in config.get("emptyDirMounts") or []
            if m.get("sizeLimit") and m.get("medium") not in ("Memory", "HugePages")
        )
        affinity = tuple(
            tuple(term.get("matchExpressions") or ())
            for term in config.get("nodeAffinity") or []
            if term.get("matchExpressions") and term.get("weight") is None
        )
        needs.append(
            TaskNeeds(
                name=task["taskInfo"]["name"],
                image=container.get("image", ""),
                cpu=_cpu(resources),
                memory=_memory(resources),
                extended=extended,
                ephemeral=ephemeral,
                node_selector=dict((config.get("nodeSelector") or {}).get("labels") or {}),
                affinity=affinity,
                tolerations=tuple(config.get("tolerations") or ()),
            )
        )
    return needs


def _expression_holds(labels: Mapping[str, str], expression: Mapping[str, Any]) -> bool:
    key, operator = expression["key"], expression.get("operator", "In")
    values = list(expression.get("values") or [])
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and values:
        try:
            number, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return number > bound if operator == "Gt" else number < bound
    return False


def labels_match(
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    affinity: Sequence[Sequence[Mapping[str, Any]]] = (),
) -> bool:
    """nodeSelector (every entry) and required node affinity (any term, all its expressions)."""
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    return not affinity or any(all(_expression_holds(labels, e) for e in t) for t in affinity)


def _tolerated(taint: Mapping[str, Any], toleration: Mapping[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint.get("key")
    return toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get(
        "value", ""
    )


def untolerated(
    taints: Sequence[Mapping[str, Any]], tolerations: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The node's NoSchedule/NoExecute taints no toleration matches, as key=value:effect."""
    return [
        f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
        for t in taints
        if t.get("effect") in ("NoSchedule", "NoExecute")
        and not any(_tolerated(t, tol) for tol in tolerations)
    ]


def misfit(task: TaskNeeds, node: NodeInfo) -> str | None:
    """Why `task`'s pod cannot run on `node`, or None when it can."""
    if not node.ready or node.unschedulable:
        return "not Ready" if not node.ready else "cordoned"
    if not labels_match(node.labels, task.node_selector, task.affinity):
        return "labels do not match the task's node selector or affinity"
    if taints := untolerated(node.taints, task.tolerations):
        return f"taint {', '.join(taints)} not tolerated"
    short = []
    if task.cpu > node.quantity("cpu") + 1e-9:
        short.append(f"cpu {task.cpu:g} > {node.quantity('cpu'):g}")
    if task.memory > node.quantity("memory"):
        short.append(f"memory {task.memory / GIB:.1f}Gi > {node.quantity('memory') / GIB:.1f}Gi")
    for resource, count in task.extended.items():
        if count > node.quantity(resource):
            short.append(f"{resource} {count:g} > {node.quantity(resource):g}")
    if task.ephemeral > node.quantity("ephemeral-storage"):
        have = node.quantity("ephemeral-storage") / GIB
        short.append(f"scratch {task.ephemeral / GIB:.0f}Gi > ephemeral-storage {have:.0f}Gi")
    return f"allocatable too small: {', '.join(short)}" if short else None


__all__ = ["NodeInfo", "TaskNeeds", "labels_match", "misfit", "task_needs", "untolerated"]
