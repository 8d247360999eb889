"""The GPU catalogue (`gpus.yaml`, shipped in this package): GPU types, where each cloud's nodes
say which GPU they carry, and common node shapes.

One definition for every consumer: the compute presets place GPU roles with `placement`, the
Helm chart derives a pool's node labels from the same file (helm/satk8s/gpus.yaml links here),
and the GPU-hour estimate takes its datasheet figures from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from satk8s.errors import ConfigError

CLOUDS = ("gke", "eks", "aks", "generic")
"""Where GPU nodes can be told apart by a label (`gpus.yaml`, `clouds`)."""


@dataclass(frozen=True)
class GpuType:
    name: str
    memory_gb: float
    """Memory per GPU, GB."""
    nodes: Mapping[str, tuple[str, ...]]
    """Cloud -> values of that cloud's GPU label on nodes carrying this GPU."""
    bf16_tflops: float | None = None
    """Dense bf16 Tensor Core peak from NVIDIA's datasheet (None where NVIDIA publishes none)."""
    hbm_tb_s: float | None = None
    datasheet: str = ""
    bf16: bool = True
    """bf16 Tensor Cores (Ampere and newer). T4 and V100 have none: fp16 mixed precision there,
    and no bf16 weights."""


@dataclass(frozen=True)
class Shape:
    """A GPU node shape as its provider documents it."""

    name: str
    cloud: str
    gpu: str
    gpus: int
    vcpu: int
    memory_gib: float
    max_pods: int | None = None
    """EKS: the AMI's max pods for the instance type (its kube-reserved memory grows with it)."""
    supported: bool = False
    """satk8s's default profiles fit it (held by the tests)."""


@dataclass(frozen=True)
class Placement:
    """Where a cloud's nodes carrying one GPU type are: a label and its accepted values."""

    label: str
    values: tuple[str, ...]

    @property
    def node_selector(self) -> dict[str, str]:
        """One value: an exact node selector; several: none (see `node_affinity`)."""
        return {self.label: self.values[0]} if len(self.values) == 1 else {}

    @property
    def node_affinity(self) -> list[dict[str, Any]]:
        """Several values: one required match expression `label In values`."""
        if len(self.values) == 1:
            return []
        return [{"key": self.label, "operator": "In", "values": list(self.values)}]


@dataclass(frozen=True)
class Catalogue:
    labels: Mapping[str, str]
    """Cloud -> the node label that tells GPU types apart there."""
    gpus: Mapping[str, GpuType]
    shapes: Mapping[str, Shape] = field(default_factory=dict)

    def gpu(self, name: str, where: str = "compute.gpu") -> GpuType:
        if name not in self.gpus:
            raise ConfigError(where, f"unknown GPU type '{name}'; known: {', '.join(self.gpus)}")
        return self.gpus[name]

    def shape(self, name: str, where: str = "compute.shape") -> Shape:
        if name not in self.shapes:
            raise ConfigError(
                where, f"unknown node shape '{name}'; known: {', '.join(self.shapes)}"
            )
        return self.shapes[name]

    def placement(self, cloud: str, gpu: str) -> Placement:
        """The label and values that select `gpu` nodes on `cloud`."""
        if cloud not in self.labels:
            raise ConfigError(
                "compute.cloud", f"unknown cloud '{cloud}'; known: {', '.join(CLOUDS)}"
            )
        values = self.gpu(gpu).nodes.get(cloud)
        if not values:
            offered = [g.name for g in self.gpus.values() if cloud in g.nodes]
            raise ConfigError(
                "compute.gpu",
                f"{cloud} offers no {gpu} nodes in satk8s's GPU catalogue; on {cloud}: "
                f"{', '.join(offered)}",
            )
        return Placement(self.labels[cloud], tuple(values))

    def shapes_for(self, gpu: str, supported_only: bool = True) -> list[Shape]:
        return [
            s for s in self.shapes.values() if s.gpu == gpu and (s.supported or not supported_only)
        ]


@cache
def catalogue() -> Catalogue:
    """The catalogue shipped with satk8s (`satk8s/cluster/gpus.yaml`)."""
    import yaml

    data = yaml.safe_load((resources.files("satk8s.cluster") / "gpus.yaml").read_text())
    return parse_catalogue(data)


def parse_catalogue(data: Mapping[str, Any]) -> Catalogue:
    labels = {cloud: str(entry["label"]) for cloud, entry in data["clouds"].items()}
    if sorted(labels) != sorted(CLOUDS):
        raise ConfigError("gpus.yaml clouds", f"must name exactly {', '.join(CLOUDS)}")
    gpus = {}
    for name, entry in data["gpus"].items():
        nodes = {cloud: tuple(values) for cloud, values in (entry.get("nodes") or {}).items()}
        if unknown := sorted(set(nodes) - set(CLOUDS)):
            raise ConfigError(f"gpus.yaml gpus.{name}.nodes", f"unknown clouds {unknown}")
        gpus[name] = GpuType(
            name=name,
            memory_gb=float(entry["memory_gb"]),
            nodes=nodes,
            bf16_tflops=entry.get("bf16_tflops"),
            hbm_tb_s=entry.get("hbm_tb_s"),
            datasheet=str(entry.get("datasheet", "")),
            bf16=bool(entry.get("bf16", True)),
        )
    shapes = {}
    for name, entry in (data.get("shapes") or {}).items():
        shape = Shape(name=name, **entry)
        if shape.gpu not in gpus or shape.cloud not in CLOUDS:
            raise ConfigError(f"gpus.yaml shapes.{name}", "names an unknown GPU type or cloud")
        shapes[name] = shape
    return Catalogue(labels, gpus, shapes)


__all__ = ["CLOUDS", "Catalogue", "GpuType", "Placement", "Shape", "catalogue", "parse_catalogue"]
