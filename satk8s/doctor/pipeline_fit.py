"""Check `pipeline`: will the tasks of a compiled pipeline find a node, and a driver they run on?

For each task of the package given with `satk8s doctor --pipeline FILE` (every part of a split
grid when FILE lists parts), the nodes are filtered as the scheduler filters them
(`satk8s.cluster.scheduling`): Ready and schedulable, labels matching the task's node selector and
affinity, its taints tolerated, allocatable CPU, memory, GPUs and ephemeral storage enough for
the requests. A task with no such node stays Pending (or, with too little disk, is evicted when
its scratch fills); the check names it and the nearest reason.

GPU tasks run the GPU image, built for CUDA 13.0, which needs NVIDIA driver >= 580
(`satk8s.images.GPU_MIN_DRIVER`). Nodes that run NVIDIA GPU feature discovery (the GPU Operator
does) carry the driver's major version as a label: `nvidia.com/cuda.driver-version.major`, and
the older `nvidia.com/cuda.driver.major` (NVIDIA/k8s-device-plugin internal/lm/nvml.go,
newVersionLabeler). A GPU task whose only fitting nodes report an older driver would start and
fail; nodes without the label are counted as fitting and reported as unknown.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from satk8s.cluster.scheduling import NodeInfo, TaskNeeds, misfit, task_needs
from satk8s.doctor.context import DoctorContext, api_error_text, forbidden
from satk8s.doctor.result import CheckResult
from satk8s.images import GPU_CUDA, GPU_MIN_DRIVER

NAME = "pipeline"
DRIVER_LABELS = ("nvidia.com/cuda.driver-version.major", "nvidia.com/cuda.driver.major")
SHOWN = 6
"""Task names listed per problem; the rest are counted."""


def list_nodes(ctx: DoctorContext) -> list[NodeInfo]:
    """Every node, as the scheduling rules read it."""
    nodes: list[NodeInfo] = []
    for node in ctx.nodes():
        conditions = (node.status.conditions if node.status else None) or []
        taints = [
            {"key": t.key, "value": t.value or "", "effect": t.effect}
            for t in ((node.spec.taints if node.spec else None) or [])
        ]
        nodes.append(
            NodeInfo(
                name=node.metadata.name,
                labels=dict(node.metadata.labels or {}),
                allocatable=dict((node.status.allocatable if node.status else None) or {}),
                taints=tuple(taints),
                ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
                unschedulable=bool(node.spec and node.spec.unschedulable),
            )
        )
    return nodes


def driver_major(node: NodeInfo) -> int | None:
    for label in DRIVER_LABELS:
        try:
            return int(node.labels[label])
        except (KeyError, ValueError):
            continue
    return None


def read_packages(path: Path) -> list[tuple[Path, list[dict]]]:
    """The compiled packages at `path`: the file itself, or each part a parts list names."""
    import yaml

    from satk8s.orchestration.grid_parts import read_parts

    parts = read_parts(path)
    return [(p, [d for d in yaml.safe_load_all(p.read_text()) if d]) for p in parts]


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return f"{shown} and {len(names) - SHOWN} more" if len(names) > SHOWN else shown


def pending_tasks(tasks: list[TaskNeeds], nodes: list[NodeInfo]) -> tuple[dict, dict, dict]:
    """(reason -> tasks that fit no node, reason -> GPU tasks whose fitting nodes all run too
    old a driver, placement -> fitting nodes of the tasks that fit), tasks grouped by what they
    ask so each placement is checked once."""
    groups: dict[str, list[TaskNeeds]] = defaultdict(list)
    for task in tasks:
        groups[task.placement_key()].append(task)
    pending: dict[str, list[str]] = defaultdict(list)
    old_driver: dict[str, list[str]] = defaultdict(list)
    fitting: dict[str, list[NodeInfo]] = {}
    for members in groups.values():
        task = members[0]
        why = {node.name: misfit(task, node) for node in nodes}
        fits = [n for n in nodes if why[n.name] is None]
        names = [m.name for m in members]
        if not fits:
            reasons = sorted(
                {w for w in why.values() if w}, key=lambda w: -sum(v == w for v in why.values())
            )
            if not nodes:
                reasons = ["the cluster lists no nodes"]
            nearest = _nearest(task, nodes, why)
            pending[nearest or reasons[0]].extend(names)
            continue
        if task.gpus:
            drivers = [driver_major(n) for n in fits]
            if all(d is not None and d < GPU_MIN_DRIVER for d in drivers):
                found = ", ".join(sorted({str(d) for d in drivers}))
                old_driver[f"driver {found} < {GPU_MIN_DRIVER}"].extend(names)
                continue
        fitting[task.placement_key()] = fits
    return pending, old_driver, fitting


def _nearest(task: TaskNeeds, nodes: list[NodeInfo], why: dict[str, str | None]) -> str | None:
    """The reason on the nodes the task is meant for (its labels match and taints are
    tolerated), naming one: that is what keeps it Pending."""
    meant = [n for n in nodes if why[n.name] and why[n.name].startswith("allocatable")]
    if meant:
        return f"{why[meant[0].name]} on {meant[0].name} ({len(meant)} node(s) of its kind)"
    return None


def check_pipeline(ctx: DoctorContext) -> CheckResult:
    path = ctx.options.pipeline
    if path is None:
        return CheckResult.skip(NAME, "no --pipeline FILE given")
    try:
        packages = read_packages(Path(path))
    except (OSError, ValueError) as err:
        return CheckResult.fail(
            NAME, f"cannot read {path}: {err}", "compile one with `satk8s grid compile`"
        )
    try:
        nodes = list_nodes(ctx)
    except Exception as err:
        fix = (
            "ask a cluster admin for get/list on nodes, or install the chart with "
            "rbac.clusterRead.enabled=true"
            if forbidden(err)
            else "re-run when the API answers"
        )
        return CheckResult.fail(NAME, f"cannot list nodes: {api_error_text(err)}", fix)
    tasks = []
    for package, docs in packages:
        if not docs or "root" not in docs[0]:
            return CheckResult.fail(
                NAME,
                f"{package} is not a compiled KFP pipeline",
                "compile it with `satk8s grid compile`",
            )
        tasks += task_needs(docs[0], docs[1] if len(docs) > 1 else None)
    pending, old_driver, fitting = pending_tasks(tasks, nodes)
    details = [f"{len(tasks)} task(s) in {len(packages)} pipeline(s), {len(nodes)} node(s)"]
    for reason, names in pending.items():
        details.append(f"would stay Pending ({reason}): {_names(names)}")
    for reason, names in old_driver.items():
        details.append(
            f"would fail to start, only nodes with NVIDIA {reason} (CUDA {GPU_CUDA}) fit: {_names(names)}"
        )
    gpu_nodes = {
        n.name: n for fits in fitting.values() for n in fits if n.quantity("nvidia.com/gpu")
    }
    unknown = sorted(n for n, node in gpu_nodes.items() if driver_major(node) is None)
    if unknown:
        details.append(
            f"driver version unknown on {_names(unknown)} (no GPU feature discovery labels "
            f"{DRIVER_LABELS[0]}): the GPU image needs >= {GPU_MIN_DRIVER}"
        )
    stuck = sorted({n for names in [*pending.values(), *old_driver.values()] for n in names})
    if stuck:
        return CheckResult.fail(
            NAME,
            f"{len(stuck)} of {len(tasks)} task(s) cannot run on this cluster's nodes: {_names(stuck)}",
            "give the roles requests that fit the nodes (compute.<role>.cpu / memory, or a "
            "compute.gpu whose nodes you have), add or scale a matching node pool, or upgrade the "
            f"GPU driver to >= {GPU_MIN_DRIVER}; a pool that autoscales from zero shows no nodes "
            "until a task is pending",
            tuple(details),
        )
    if unknown:
        return CheckResult.warn(
            NAME,
            f"every task fits a node; the GPU driver version of {len(unknown)} node(s) is unknown",
            f"run NVIDIA GPU feature discovery (the GPU Operator does), or check `nvidia-smi` "
            f"there: the GPU image needs driver >= {GPU_MIN_DRIVER}",
            tuple(details),
        )
    return CheckResult.ok(NAME, f"every one of {len(tasks)} task(s) fits a node", tuple(details))
