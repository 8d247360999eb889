"""What a GPU node shape leaves for pods, and whether a step's requests fit it.

A node's allocatable CPU and memory are its capacity less what the provider reserves for the
kubelet and the system, less the kubelet's hard eviction threshold. Each provider documents its
own formula (cited at each function). On top of that satk8s keeps `DAEMONSET_ALLOWANCE` per node
for the DaemonSets every GPU node runs (device plugin, GPU feature discovery, logging, network
agents): our own round figure, not a provider's.

A request fits a shape when the node can hold one such pod per group of GPUs it asks for: with
`g` GPUs per pod on a node of `G` GPUs, each pod may take `g/G` of what is left for pods, so all
of the node's GPUs stay usable.
"""

from __future__ import annotations

from dataclasses import dataclass

from satk8s.cluster.gpus import Shape

MIB = 1 / 1024
"""GiB per MiB."""

DAEMONSET_ALLOWANCE = (0.5, 1.0)
"""(CPU, GiB) kept per node for DaemonSet pods."""

AKS_MAX_PODS = 250
"""Pods per node AKS reserves memory for when none is given: the Azure CNI Overlay default
(https://learn.microsoft.com/en-us/azure/aks/azure-cni-overlay, "maximum pods per node")."""


@dataclass(frozen=True)
class Allocatable:
    cpu: float
    memory_gib: float


def _tiers(total: float, tiers: list[tuple[float, float]]) -> float:
    """Sum of rate x the part of `total` in each (upper bound, rate) tier."""
    reserved, lower = 0.0, 0.0
    for upper, rate in tiers:
        if total > lower:
            reserved += (min(total, upper) - lower) * rate
        lower = upper
    return reserved


def _linux_cpu_reserve(cores: float) -> float:
    """6% of the first core, 1% of the next, 0.5% of the next two, 0.25% of every core above
    four: GKE (https://cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes,
    "Memory and CPU reservations") and the EKS AMI (awslabs/amazon-eks-ami
    nodeadm/internal/kubelet/config.go, getCPUMillicoresToReserve) both use it."""
    return _tiers(cores, [(1, 0.06), (2, 0.01), (4, 0.005), (float("inf"), 0.0025)])


def gke_allocatable(vcpu: float, memory_gib: float) -> Allocatable:
    """GKE Standard: memory reserve 25% of the first 4 GiB, 20% of the next 4, 10% of the next
    8, 6% of the next 112, 2% above 128 GiB (255 MiB under 1 GiB), plus a 100 MiB eviction
    threshold (same page as `_linux_cpu_reserve`)."""
    if memory_gib < 1:
        reserved = 255 * MIB
    else:
        tiers = [(4, 0.25), (8, 0.20), (16, 0.10), (128, 0.06), (float("inf"), 0.02)]
        reserved = _tiers(memory_gib, tiers)
    return Allocatable(vcpu - _linux_cpu_reserve(vcpu), memory_gib - reserved - 100 * MIB)


def eks_allocatable(vcpu: float, memory_gib: float, max_pods: int) -> Allocatable:
    """EKS AMI (nodeadm): kube-reserved memory 11 MiB x max pods + 255 MiB
    (getMemoryMebibytesToReserve) and evictionHard memory.available 100Mi (config.go defaults),
    awslabs/amazon-eks-ami nodeadm/internal/kubelet/config.go."""
    reserved = (11 * max_pods + 255) * MIB
    return Allocatable(vcpu - _linux_cpu_reserve(vcpu), memory_gib - reserved - 100 * MIB)


_AKS_CPU_MILLICORES = [(1, 60), (2, 100), (4, 140), (8, 180), (16, 260), (32, 420), (64, 740)]
"""AKS kube-reserved CPU by host cores (https://learn.microsoft.com/en-us/azure/aks/
node-resource-reservations). Between two rows the larger one is taken; the table ends at 64
cores, whose figure larger hosts get."""


def aks_allocatable(vcpu: float, memory_gib: float, max_pods: int = AKS_MAX_PODS) -> Allocatable:
    """AKS 1.29 and later: memory reserve the lesser of 20 MB x max pods + 50 MB and 25% of
    the memory (MB taken as MiB: a slightly larger reserve), plus a 100 Mi eviction threshold
    (https://learn.microsoft.com/en-us/azure/aks/node-resource-reservations)."""
    cpu_m = next((m for cores, m in _AKS_CPU_MILLICORES if vcpu <= cores), 740)
    reserved = min((20 * max_pods + 50) * MIB, 0.25 * memory_gib)
    return Allocatable(vcpu - cpu_m / 1000, memory_gib - reserved - 100 * MIB)


def allocatable(shape: Shape) -> Allocatable:
    """What `shape` leaves for pods, by its provider's formula."""
    if shape.cloud == "gke":
        return gke_allocatable(shape.vcpu, shape.memory_gib)
    if shape.cloud == "eks":
        return eks_allocatable(shape.vcpu, shape.memory_gib, shape.max_pods or 110)
    if shape.cloud == "aks":
        return aks_allocatable(shape.vcpu, shape.memory_gib)
    raise ValueError(f"no reserve formula for cloud {shape.cloud!r}")


def per_pod_budget(shape: Shape, gpus: int) -> Allocatable | None:
    """CPU and memory one pod of `gpus` GPUs may request on `shape` so the node's every GPU can
    be in use; None when the pod asks for more GPUs than the node has."""
    if gpus > shape.gpus or gpus < 1:
        return None
    alloc = allocatable(shape)
    share = gpus / shape.gpus
    cpu, memory = DAEMONSET_ALLOWANCE
    return Allocatable((alloc.cpu - cpu) * share, (alloc.memory_gib - memory) * share)


def misfit(shape: Shape, gpus: int, cpu: float, memory_gib: float) -> str | None:
    """Why a pod of `gpus` GPUs, `cpu` CPUs and `memory_gib` GiB does not fit `shape`, or None."""
    budget = per_pod_budget(shape, gpus)
    if budget is None:
        return f"needs {gpus} GPUs, {shape.name} has {shape.gpus}"
    problems = []
    if cpu > budget.cpu + 1e-9:
        problems.append(f"{cpu:g} CPU > {budget.cpu:.2f}")
    if memory_gib > budget.memory_gib + 1e-9:
        problems.append(f"{memory_gib:g}Gi memory > {budget.memory_gib:.1f}Gi")
    if not problems:
        return None
    share = "" if gpus == shape.gpus else f" per {gpus} of its {shape.gpus} GPUs"
    return f"{', '.join(problems)} that {shape.name} leaves for pods{share}"


__all__ = [
    "AKS_MAX_PODS",
    "DAEMONSET_ALLOWANCE",
    "Allocatable",
    "aks_allocatable",
    "allocatable",
    "eks_allocatable",
    "gke_allocatable",
    "misfit",
    "per_pod_budget",
]
