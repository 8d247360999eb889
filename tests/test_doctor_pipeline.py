"""`satk8s doctor --pipeline FILE`: each task of a compiled pipeline against the nodes of the
loopback Kubernetes API (`tests/kube_fake.py`), filtered as the scheduler filters them, and the
GPU nodes' driver against what the GPU image needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from satk8s.cli.doctor_cmd import doctor
from satk8s.cluster.scheduling import NodeInfo, TaskNeeds, labels_match, misfit, untolerated
from satk8s.cluster.settings import ClusterSettings
from satk8s.grid.cluster import load_cluster_plan
from satk8s.pipelines.builder import compile_grid
from tests.kube_fake import FakeCluster, kubeconfig, node

IMAGES = {
    "gpu": "registry.example/satk8s-gpu@sha256:" + "a" * 64,
    "cpu": "registry.example/satk8s-cpu@sha256:" + "b" * 64,
}
SETTINGS = ClusterSettings(store_root="s3://acme-satk8s/store", source="test")
# LoRA: a full fine-tune of the 1.7B model does not fit a 24 GB A10G (tests/test_memory_plan.py).
A10G_GRID = [
    "compute=generic",
    "compute.gpu=a10g",
    "seeds=[0]",
    "signals=[entropy]",
    "train.lora=true",
]


def g5_2xlarge(name: str, **kw: object) -> dict:
    """An EKS g5.2xlarge node as its AMI leaves it: 7910m CPU and 31 GiB allocatable."""
    return node(name, "a10g", 1, product="NVIDIA-A10G", cpu="7910m", memory="31Gi", **kw)


def run_doctor(cluster: FakeCluster, tmp_path: Path, package: Path) -> tuple[int, str]:
    import typer

    app = typer.Typer()
    app.command()(doctor)
    app.command("other")(lambda: None)
    args = ["doctor", "--kubeconfig", str(kubeconfig(tmp_path, cluster.port)), "--context", "fake"]
    result = CliRunner().invoke(app, [*args, "--pipeline", str(package), "--only", "pipeline"])
    return result.exit_code, result.output


def compiled(tmp_path: Path, overrides: list[str], max_bytes: int | None = None) -> Path:
    plan = load_cluster_plan("arith", overrides, SETTINGS)
    kwargs = {"max_bytes": max_bytes} if max_bytes else {}
    return compile_grid(plan, tmp_path / "arith.yaml", IMAGES, **kwargs).path


def test_a_task_that_fits_no_node_is_named_with_the_reason(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    cluster.nodes = [node("cpu-1", "default-pool", 0), g5_2xlarge("a10g-1"), g5_2xlarge("a10g-2")]
    # The old fixed train request, 96 GiB, on g5.2xlarge nodes.
    package = compiled(tmp_path, [*A10G_GRID, "compute.train.memory=96Gi"])

    code, out = run_doctor(cluster, tmp_path, package)

    assert code == 1, out
    assert "FAIL  pipeline      4 of 24 task(s) cannot run on this cluster's nodes: " in out
    assert (
        "would stay Pending (allocatable too small: memory 96.0Gi > 31.0Gi on a10g-1 "
        "(2 node(s) of its kind)): train-sft-none-s0, train-best_of_n-entropy-s0, "
        "train-weighted_sft-entropy-s0, train-dpo-entropy-s0"
    ) in out
    assert "fix: give the roles requests that fit the nodes" in out


def test_the_default_requests_fit_and_the_doctor_says_so(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    cluster.nodes = [node("cpu-1", "default-pool", 0), g5_2xlarge("a10g-1")]
    code, out = run_doctor(cluster, tmp_path, compiled(tmp_path, A10G_GRID))
    assert code == 0, out
    assert "ok    pipeline      every one of 24 task(s) fits a node" in out


def test_gpu_nodes_on_an_older_driver_and_nodes_of_unknown_driver(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    package = compiled(tmp_path, A10G_GRID)
    cluster.nodes = [node("cpu-1", "default-pool", 0), g5_2xlarge("a10g-1", driver="550")]
    code, out = run_doctor(cluster, tmp_path, package)
    assert code == 1
    assert "would fail to start, only nodes with NVIDIA driver 550 < 580 (CUDA 13.0) fit: " in out
    # Every GPU task: generate, the entropy signal, 4 trainings, 5 evaluations.
    assert "FAIL  pipeline      11 of 24 task(s) cannot run on this cluster's nodes: " in out

    cluster.nodes = [node("cpu-1", "default-pool", 0), g5_2xlarge("a10g-1", driver=None)]
    code, out = run_doctor(cluster, tmp_path, package)
    assert code == 0  # a warning: the version is unknown, not wrong
    assert (
        "WARN  pipeline      every task fits a node; the GPU driver version of 1 node(s) is unknown"
        in out
    )
    assert "driver version unknown on a10g-1" in out


def test_gpu_tasks_do_not_land_on_untolerated_or_unlabelled_nodes(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    # H100 nodes only: the a10g tasks' affinity matches none of them.
    cluster.nodes = [node("cpu-1", "default-pool", 0), node("h100-1", "h100", 8)]
    code, out = run_doctor(cluster, tmp_path, compiled(tmp_path, A10G_GRID))
    assert code == 1
    assert "would stay Pending (labels do not match the task's node selector or affinity)" in out


def test_every_part_of_a_split_grid_is_checked(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.nodes = [node("cpu-1", "default-pool", 0), g5_2xlarge("a10g-1")]
    package = compiled(tmp_path, [*A10G_GRID, "seeds=[0,1,2]"], max_bytes=96 * 1024)
    assert "satk8s_parts" in package.read_text()
    code, out = run_doctor(cluster, tmp_path, package)
    assert code == 0, out
    assert "task(s) in 3 pipeline(s)" in out or "task(s) in 2 pipeline(s)" in out


# -- the scheduler's filters, as Kubernetes documents them ---------------------------------------


def test_node_affinity_terms_are_ored_and_their_expressions_anded() -> None:
    labels = {"node.kubernetes.io/instance-type": "g5.2xlarge", "zone": "a"}
    in_types = {
        "key": "node.kubernetes.io/instance-type",
        "operator": "In",
        "values": ["g5.2xlarge"],
    }
    not_a = {"key": "zone", "operator": "NotIn", "values": ["a"]}
    assert labels_match(labels, {}, [[in_types]])
    assert not labels_match(labels, {}, [[in_types, not_a]])
    assert labels_match(labels, {}, [[not_a], [in_types]])
    assert not labels_match(labels, {"zone": "b"}, [[in_types]])
    assert labels_match({"gpus": "8"}, {}, [[{"key": "gpus", "operator": "Gt", "values": ["4"]}]])


def test_taints_are_tolerated_by_key_value_and_effect() -> None:
    gpu = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    soft = {"key": "spot", "value": "true", "effect": "PreferNoSchedule"}
    assert untolerated([gpu, soft], []) == ["nvidia.com/gpu=present:NoSchedule"]
    assert untolerated([gpu], [{"key": "nvidia.com/gpu", "operator": "Exists"}]) == []
    assert untolerated([gpu], [{"operator": "Exists"}]) == []  # tolerates everything
    wrong = {
        "key": "nvidia.com/gpu",
        "operator": "Equal",
        "value": "absent",
        "effect": "NoSchedule",
    }
    assert untolerated([gpu], [wrong]) != []


def test_requests_are_held_against_allocatable() -> None:
    task = TaskNeeds(
        "t", "img", cpu=8, memory=16 * 2**30, extended={"nvidia.com/gpu": 1}, ephemeral=100 * 2**30
    )
    small = NodeInfo(
        "n",
        {},
        {"cpu": "7910m", "memory": "31Gi", "nvidia.com/gpu": "1", "ephemeral-storage": "18Gi"},
    )
    assert misfit(task, small) == (
        "allocatable too small: cpu 8 > 7.91, scratch 100Gi > ephemeral-storage 18Gi"
    )
    assert (
        misfit(
            task,
            NodeInfo(
                "n",
                {},
                {"cpu": "8", "memory": "31Gi", "nvidia.com/gpu": "1", "ephemeral-storage": "200Gi"},
            ),
        )
        is None
    )
    assert misfit(task, NodeInfo("n", {}, {"cpu": "8"}, ready=False)) == "not Ready"


@pytest.mark.parametrize("unit", ["Gi", "G"])
def test_quantities_in_both_units(unit: str) -> None:
    from satk8s.cluster.quantity import parse_quantity

    assert parse_quantity(f"2{unit}") == (2 * 2**30 if unit == "Gi" else 2e9)
    assert parse_quantity("500m") == 0.5
