"""The GPU catalogue (`satk8s/cluster/gpus.yaml`): the one definition of GPU types, the node
labels that tell them apart on each cloud, and node shapes; the presets, the chart and the
GPU-hour estimate all read it."""

from __future__ import annotations

import pytest

from satk8s.cluster.gpus import CLOUDS, catalogue, parse_catalogue
from satk8s.errors import ConfigError


def test_every_cloud_names_its_gpu_label() -> None:
    assert dict(catalogue().labels) == {
        "gke": "cloud.google.com/gke-accelerator",
        "eks": "node.kubernetes.io/instance-type",
        "aks": "node.kubernetes.io/instance-type",
        "generic": "nvidia.com/gpu.product",
    }


def test_the_gpu_types_asked_for_are_there_with_their_nodes() -> None:
    gpus = catalogue().gpus
    assert {"h100-80gb", "a100-80gb", "a100-40gb", "l4", "a10g"} <= set(gpus)
    assert gpus["h100-80gb"].nodes["gke"] == ("nvidia-h100-80gb",)
    assert gpus["a100-40gb"].nodes["gke"] == ("nvidia-tesla-a100",)
    assert "g5.2xlarge" in gpus["a10g"].nodes["eks"] and "gke" not in gpus["a10g"].nodes
    for gpu in gpus.values():
        # GPU feature discovery's product label: the NVML name with spaces as '-' (pre-Ampere
        # data-center parts keep NVML's "Tesla" brand: "Tesla T4" -> Tesla-T4)
        brand = ("Tesla-",) if not gpu.bf16 else ("NVIDIA-",)
        assert all(" " not in p and p.startswith(brand) for p in gpu.nodes.get("generic", ()))
    assert {name for name, gpu in gpus.items() if not gpu.bf16} == {"t4", "v100"}


def test_every_supported_shape_is_a_node_type_its_gpu_lists() -> None:
    c = catalogue()
    for shape in c.shapes.values():
        if shape.cloud in ("eks", "aks"):
            assert shape.name in c.gpus[shape.gpu].nodes[shape.cloud], shape.name


def test_the_gpu_hour_estimate_reads_the_datasheet_figures_from_the_catalogue() -> None:
    from satk8s.grid.cost import GPUS

    c = catalogue()
    assert set(GPUS) == {n for n, g in c.gpus.items() if g.bf16_tflops}
    assert "a10g" not in GPUS  # NVIDIA publishes no datasheet for AWS's A10G
    assert GPUS["h100-80gb"].bf16_tflops == c.gpus["h100-80gb"].bf16_tflops == 989


def test_a_broken_catalogue_is_named() -> None:
    good = {"clouds": {c: {"label": "x"} for c in CLOUDS}, "gpus": {}}
    with pytest.raises(ConfigError, match="gpus.yaml clouds"):
        parse_catalogue({**good, "clouds": {"gke": {"label": "x"}}})
    with pytest.raises(ConfigError, match="gpus.yaml gpus.x.nodes"):
        parse_catalogue({**good, "gpus": {"x": {"memory_gb": 1, "nodes": {"ibm": ["a"]}}}})
    bad_shape = {"s": {"cloud": "eks", "gpu": "nope", "gpus": 1, "vcpu": 1, "memory_gib": 1}}
    with pytest.raises(ConfigError, match="gpus.yaml shapes.s"):
        parse_catalogue({**good, "shapes": bad_shape})
