"""Check: the cluster has GPU nodes, per node pool, with `nvidia.com/gpu` allocatable."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from satk8s.doctor.context import DoctorContext, api_error_text, forbidden
from satk8s.doctor.result import CheckResult

NAME = "gpu-nodes"
GPU_RESOURCE = "nvidia.com/gpu"

POOL_LABELS = (
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "karpenter.sh/nodepool",
    "kubernetes.azure.com/agentpool",
    "agentpool",
)
"""Labels that name a node's pool on GKE, EKS, Karpenter and AKS, in that order."""

PRODUCT_LABELS = ("nvidia.com/gpu.product", "cloud.google.com/gke-accelerator")


@dataclass(frozen=True)
class GpuNode:
    name: str
    labels: dict[str, str]
    capacity: int
    allocatable: int
    ready: bool
    schedulable: bool

    @property
    def pool(self) -> str:
        return next((self.labels[k] for k in POOL_LABELS if k in self.labels), "(no pool label)")

    @property
    def product(self) -> str:
        return next((self.labels[k] for k in PRODUCT_LABELS if k in self.labels), "unknown GPU")


def _count(quantities: dict[str, str] | None) -> int:
    try:
        return int((quantities or {}).get(GPU_RESOURCE, "0"))
    except ValueError:
        return 0


def list_gpu_nodes(ctx: DoctorContext) -> list[GpuNode]:
    """Every node with GPU capacity (allocatable or not)."""
    nodes: list[GpuNode] = []
    for node in ctx.nodes():
        status = node.status
        capacity = _count(status.capacity if status else None)
        allocatable = _count(status.allocatable if status else None)
        if capacity == 0 and allocatable == 0:
            continue
        conditions = (status.conditions if status else None) or []
        nodes.append(
            GpuNode(
                name=node.metadata.name,
                labels=dict(node.metadata.labels or {}),
                capacity=capacity,
                allocatable=allocatable,
                ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
                schedulable=not (node.spec and node.spec.unschedulable),
            )
        )
    return nodes


def _configured_pools(ctx: DoctorContext) -> list[dict]:
    """The chart's gpuPools (name, nodeLabels), if the chart is installed; else none."""
    try:
        settings = ctx.settings()
    except Exception:  # the secrets check reports a missing or unreadable settings ConfigMap
        return []
    pools = settings.gpu_pools if settings else ()
    return [{"name": p.name, "nodeLabels": dict(p.node_labels)} for p in pools]


def check_gpu_nodes(ctx: DoctorContext) -> CheckResult:
    """GPU nodes grouped by pool; FAIL with none allocatable, WARN on pools that look broken."""
    try:
        nodes = list_gpu_nodes(ctx)
    except Exception as err:
        if forbidden(err):
            return CheckResult.fail(
                NAME,
                f"not allowed to list nodes ({api_error_text(err)}); nodes are cluster-scoped",
                "ask a cluster admin for get/list on nodes, or install the chart with "
                "rbac.clusterRead.enabled=true and your user or group in "
                "rbac.clusterRead.subjects",
            )
        return CheckResult.fail(
            NAME, f"cannot list nodes: {api_error_text(err)}", "re-run when the API answers"
        )

    usable = [n for n in nodes if n.allocatable > 0 and n.ready]
    by_pool: dict[str, list[GpuNode]] = defaultdict(list)
    for node in nodes:
        by_pool[node.pool].append(node)
    details = []
    for pool, members in sorted(by_pool.items()):
        ready = sum(n.ready for n in members)
        gpus = sum(n.allocatable for n in members if n.ready)
        products = ", ".join(sorted({n.product for n in members}))
        details.append(
            f"pool {pool}: {len(members)} node(s), {ready} ready, "
            f"{gpus} {GPU_RESOURCE} allocatable ({products})"
        )

    if not usable:
        seen = f"{len(nodes)} node(s) report GPU capacity but none is ready with allocatable GPUs"
        return CheckResult.fail(
            NAME,
            seen if nodes else f"no node has allocatable {GPU_RESOURCE}",
            "add a GPU node pool, or scale one up; make sure the NVIDIA device plugin "
            "(or the NVIDIA GPU Operator) runs on it so nodes advertise nvidia.com/gpu. "
            "If the pool autoscales from zero, this is expected until a GPU step is pending.",
            tuple(details),
        )

    problems = []
    stuck = [n.name for n in nodes if n.capacity > 0 and n.allocatable == 0]
    if stuck:
        problems.append(
            f"GPU capacity but 0 allocatable on {', '.join(stuck)}: the device plugin is "
            "not ready there (kubectl -n gpu-operator get pods), or GPUs are marked unhealthy"
        )
    not_ready = [n.name for n in nodes if not n.ready]
    if not_ready:
        problems.append(f"not Ready: {', '.join(not_ready)} (kubectl describe node <name>)")
    for pool in _configured_pools(ctx):
        labels = pool.get("nodeLabels") or {}
        matched = [n for n in usable if all(n.labels.get(k) == v for k, v in labels.items())]
        gpus = sum(n.allocatable for n in matched)
        selector = ",".join(f"{k}={v}" for k, v in labels.items()) or "no labels"
        details.append(
            f"chart pool {pool['name']} ({selector}): {len(matched)} node(s), {gpus} GPUs"
        )
        if not matched:
            problems.append(
                f"chart pool '{pool['name']}' matches no ready GPU node with labels {selector}: "
                "fix gpuPools[].nodeLabels in the chart values (kubectl get nodes --show-labels), "
                "or ignore this if the pool autoscales from zero"
            )

    total = sum(n.allocatable for n in usable)
    message = f"{len(usable)} GPU node(s), {total} GPUs allocatable in {len(by_pool)} pool(s)"
    if problems:
        return CheckResult.warn(NAME, message, "; ".join(problems), tuple(details))
    return CheckResult.ok(NAME, message, tuple(details))
