"""Several nodes: the train step as a Kubeflow Trainer TrainJob, through the Kubeflow SDK.

- the Kubernetes backend against the loopback cluster (`tests/kube_fake.py`, which serves the
  Trainer API and the pods its JobSets run): the TrainJob's body, and its node's command run for
  real (bash, torchrun, the step as rank 0), as the `node` container would run it;
- the SDK's local process backend: the same code path on this machine (a fresh virtual
  environment, torchrun, the step), in CI;
- the compiled pipeline: a train task with several nodes runs on the CPU role and carries the
  TrainJob's spec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

from satk8s.errors import ConfigError, Satk8sError
from satk8s.steps.outputs import finished_summary
from satk8s.steps.train import train_model
from satk8s.training.trainjob import (
    SPEC_ENV,
    TrainJobSpec,
    own_service_account,
    trainjob_env,
    trainjob_name,
)
from tests.kube_fake import NS, FakeCluster, kubeconfig, run_trainjob_nodes
from tests.test_distributed_train import _config, _dataset
from tests.test_training import sft_table

REPO = Path(__file__).resolve().parents[1]
IMAGE = "registry.example/satk8s-gpu@sha256:" + "a" * 64
PROFILE = {
    "accelerator_type": "nvidia.com/gpu",
    "accelerator_count": 4,
    "nodes": 2,
    "cpu": "32",
    "memory": "256Gi",
    "node_selector": {"satk8s.io/pool": "h100"},
    "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "value": "", "effect": "NoSchedule"}
    ],
    "shm_size": "64Gi",
    "secrets": [
        {
            "secret": "satk8s-s3",
            "optional": True,
            "env": {
                "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
            },
        },
        {"secret": "satk8s-hub-token", "optional": True, "env": {"HF_TOKEN": "HF_TOKEN"}},
    ],
    "env": {"SATK8S_S3_REGION": "eu-west-1"},
    "pod_labels": {"kueue.x-k8s.io/queue-name": "gpu-queue"},
}


def _node_command(trainjob: dict[str, Any]) -> list[str]:
    return trainjob["spec"]["trainer"]["command"]


def run_node_for_real(cluster: FakeCluster, trainjob: dict[str, Any]) -> None:
    """The controller's part, with the first node's container command really run: bash writes
    the SDK's function file and torchrun runs it (one process here; on a cluster the torch
    plugin's PET_* variables make it `nodes` x GPUs), which trains as rank 0 and commits."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.update({e["name"]: e["value"] for e in trainjob["spec"]["trainer"].get("env") or []})
    workdir = Path(os.environ["SATK8S_TEST_NODE_DIR"])
    done = subprocess.run(
        _node_command(trainjob), cwd=workdir, env=env, capture_output=True, text=True
    )
    run_trainjob_nodes(cluster, trainjob, ok=done.returncode == 0)
    first = next(p for p in cluster.pod_logs if p.endswith("node-0-0-x7k2p"))
    cluster.pod_logs[first] = done.stdout + done.stderr


@pytest.fixture
def kube(cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, cluster.port)))
    spec = json.loads(trainjob_env(PROFILE, IMAGE))
    spec.update(namespace=NS, poll_s=0.2, service_account="satk8s-runner")
    monkeypatch.setenv(SPEC_ENV, json.dumps(spec))
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    monkeypatch.setenv("SATK8S_TEST_NODE_DIR", str(node_dir))
    return cluster


def _trainjob_request(cluster: FakeCluster) -> dict[str, Any]:
    posts = [r for r in cluster.requests if r["method"] == "POST"]
    assert len(posts) == 1
    return posts[0]["body"]


@pytest.mark.slow
def test_two_nodes_submit_a_trainjob_whose_node_trains_and_commits(
    kube: FakeCluster, random_tiny_dir: Path, tmp_path: Path
) -> None:
    kube.on_trainjob = run_node_for_real
    dataset = _dataset(tmp_path, "set", sft_table(), "sft")
    out = str(tmp_path / "train")
    config = _config(random_tiny_dir, "sft", 4)
    config = type(config)(
        config.model, config.train, type(config.distributed)(processes=4, nodes=2)
    )
    summary = train_model(dataset, out, config)

    assert summary["trainjob"] == trainjob_name(out) and summary["cached"] is False
    assert summary["steps"] == 3 and finished_summary(out)["steps"] == 3
    # The node ran one torchrun process here, with the run's batch per optimizer step.
    assert summary["world_size"] == 1 and summary["tokens_seen"] > 0

    body = _trainjob_request(kube)
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainJob"
    assert body["metadata"]["name"] == trainjob_name(out)
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "satk8s",
        "kueue.x-k8s.io/queue-name": "gpu-queue",
    }
    spec = body["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    } or spec["runtimeRef"] == {"kind": "ClusterTrainingRuntime", "name": "torch-distributed"}
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 2
    assert trainer["image"] == IMAGE
    resources = {"nvidia.com/gpu": "4", "cpu": "32", "memory": "256Gi"}
    assert trainer["resourcesPerNode"] == {"requests": resources, "limits": resources}
    assert {"name": "SATK8S_S3_REGION", "value": "eu-west-1"} in trainer["env"]
    assert _node_command(body)[0:2] == ["bash", "-c"]
    assert "torchrun" in _node_command(body)[2] and "satk8s_trainjob(**{" in _node_command(body)[2]

    (patch,) = spec["runtimePatches"]
    assert patch["manager"] == "trainer.kubeflow.org/kubeflow-sdk"
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    pod = job["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"satk8s.io/pool": "h100"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["serviceAccountName"] == "satk8s-runner"
    assert pod["volumes"] == [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}}
    ]
    (container,) = pod["containers"]
    assert container["name"] == "node"
    assert container["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env == {
        "AWS_ACCESS_KEY_ID": {"name": "satk8s-s3", "key": "AWS_ACCESS_KEY_ID", "optional": True},
        "AWS_SECRET_ACCESS_KEY": {
            "name": "satk8s-s3",
            "key": "AWS_SECRET_ACCESS_KEY",
            "optional": True,
        },
        "HF_TOKEN": {"name": "satk8s-hub-token", "key": "HF_TOKEN", "optional": True},
    }


def test_a_failed_trainjob_fails_the_task_with_its_name(
    kube: FakeCluster, random_tiny_dir: Path, tmp_path: Path
) -> None:
    kube.on_trainjob = lambda cluster, job: run_trainjob_nodes(cluster, job, ok=False)
    dataset = _dataset(tmp_path, "set", sft_table(), "sft")
    out = str(tmp_path / "train")
    config = _config(random_tiny_dir, "sft", 1)
    config = type(config)(config.model, config.train, type(config.distributed)(nodes=2))
    with pytest.raises(Satk8sError, match=f"TrainJob {trainjob_name(out)} ended Failed"):
        train_model(dataset, out, config)
    assert finished_summary(out) is None


def _existing(cluster: FakeCluster, name: str) -> dict[str, Any]:
    job = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "runtimeRef": {"name": "torch-distributed", "kind": "ClusterTrainingRuntime"},
            "trainer": {"numNodes": 2},
        },
    }
    cluster.trainjobs[name] = job
    return job


def _two_node_config(model: Path) -> Any:
    config = _config(model, "sft", 1)
    return type(config)(config.model, config.train, type(config.distributed)(nodes=2))


def test_a_retried_task_follows_its_running_trainjob_instead_of_submitting_again(
    kube: FakeCluster, random_tiny_dir: Path, tmp_path: Path
) -> None:
    import threading

    dataset = _dataset(tmp_path, "set", sft_table(), "sft")
    out = str(tmp_path / "train")
    running = _existing(kube, trainjob_name(out))
    run_trainjob_nodes(kube, running)
    running["status"] = {}  # no condition yet: both nodes' pods running
    for pod in kube.pods.values():
        pod["status"]["phase"] = "Running"
    threading.Timer(1.0, run_trainjob_nodes, (kube, running, False)).start()
    with pytest.raises(Satk8sError, match="ended Failed"):
        train_model(dataset, out, _two_node_config(random_tiny_dir))
    methods = [r["method"] for r in kube.requests if "/trainjobs" in r["path"]]
    assert "POST" not in methods and "DELETE" not in methods


def test_a_retried_task_replaces_its_failed_trainjob(
    kube: FakeCluster, random_tiny_dir: Path, tmp_path: Path
) -> None:
    dataset = _dataset(tmp_path, "set", sft_table(), "sft")
    out = str(tmp_path / "train")
    run_trainjob_nodes(kube, _existing(kube, trainjob_name(out)), ok=False)
    kube.on_trainjob = lambda cluster, job: run_trainjob_nodes(cluster, job, ok=False)
    with pytest.raises(Satk8sError, match="ended Failed"):
        train_model(dataset, out, _two_node_config(random_tiny_dir))
    methods = [r["method"] for r in kube.requests if "/trainjobs" in r["path"]]
    assert methods.count("DELETE") == 1 and methods.count("POST") == 1


def test_a_finished_output_or_a_gated_set_submits_nothing(
    kube: FakeCluster, random_tiny_dir: Path, tmp_path: Path
) -> None:
    from satk8s.steps.outputs import commit, open_output

    gated = str(tmp_path / "gated")
    staging = open_output(gated)
    (staging / "gated.json").write_text(json.dumps({"reasons": ["label mass"]}))
    commit(staging, "build_dataset", {"gated": True}, {}, {}, 0.0)
    config = _config(random_tiny_dir, "sft", 1)
    config = type(config)(config.model, config.train, type(config.distributed)(nodes=2))
    summary = train_model(gated, str(tmp_path / "train"), config)
    assert summary["gated"] is True
    assert not [r for r in kube.requests if "/trainjobs" in r["path"]]


def test_a_bad_training_set_fails_before_any_trainjob(
    kube: FakeCluster, random_tiny_dir: Path, tmp_path: Path
) -> None:
    table = sft_table().drop(["completion"])
    dataset = _dataset(tmp_path, "bad", table, "sft")
    config = _config(random_tiny_dir, "sft", 1)
    config = type(config)(config.model, config.train, type(config.distributed)(nodes=2))
    with pytest.raises(Exception, match="completion"):
        train_model(dataset, str(tmp_path / "train"), config)
    assert not [r for r in kube.requests if "/trainjobs" in r["path"]]


def test_several_nodes_without_a_trainjob_spec_is_a_config_error(
    random_tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SPEC_ENV, raising=False)
    dataset = _dataset(tmp_path, "set", sft_table(), "sft")
    config = _config(random_tiny_dir, "sft", 1)
    config = type(config)(config.model, config.train, type(config.distributed)(nodes=2))
    with pytest.raises(ConfigError, match="distributed.nodes"):
        train_model(dataset, str(tmp_path / "train"), config)


def test_the_trainjob_spec_comes_from_the_train_profile() -> None:
    spec = TrainJobSpec(**json.loads(trainjob_env(PROFILE, IMAGE)))
    assert (spec.nodes, spec.gpus_per_node, spec.cpu, spec.memory) == (2, 4, "32", "256Gi")
    assert spec.image == IMAGE and spec.runtime == "torch-distributed"
    assert spec.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert spec.labels == {"kueue.x-k8s.io/queue-name": "gpu-queue"}


def test_the_nodes_run_as_the_submitting_pods_service_account(tmp_path: Path) -> None:
    import base64

    claims = {"sub": "system:serviceaccount:team-a:satk8s-runner"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    token = tmp_path / "token"
    token.write_text(f"header.{payload}.signature")
    assert own_service_account(str(token)) == "satk8s-runner"
    assert own_service_account(str(tmp_path / "absent")) is None


def test_a_compiled_train_task_with_two_nodes_runs_on_cpu_and_carries_the_spec(
    tmp_path: Path,
) -> None:
    from satk8s.grid.expand import load_plan
    from satk8s.pipelines.builder import compile_plan
    from tests.test_pipeline_compile import IMAGES

    plan = load_plan(
        "smoke",
        [
            "store.root=/tmp/satk8s-store",
            "seeds=[0]",
            "signals=[none]",
            "algorithms=[sft]",
            "compute.train.accelerator_type=nvidia.com/gpu",
            "compute.train.accelerator_count=4",
            "compute.train.nodes=2",
        ],
    )
    train = next(n for n in plan.nodes if n.step == "train")
    assert train.config["distributed"] == {"processes": 4, "nodes": 2, "strategy": "fsdp"}
    spec = next(yaml.safe_load_all(compile_plan(plan, tmp_path / "p.yaml", IMAGES).read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    key = next(k for k, t in tasks.items() if t["taskInfo"]["name"] == train.id)
    label = spec["components"][tasks[key]["componentRef"]["name"]]["executorLabel"]
    container = spec["deploymentSpec"]["executors"][label]["container"]
    assert container["image"] == IMAGES["cpu"]
    assert "accelerator" not in container.get("resources", {})
    env = {e["name"]: e["value"] for e in container["env"]}
    trainjob = TrainJobSpec(**json.loads(env[SPEC_ENV]))
    assert (trainjob.nodes, trainjob.gpus_per_node, trainjob.image) == (2, 4, IMAGES["gpu"])


@pytest.mark.slow
def test_the_trainjob_runs_through_the_sdks_local_process_backend(
    random_tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubeflow 0.5.0's local process backend: `python -m venv`, `ensurepip`, pip installs the
    packages, then `<venv>/bin/torchrun <the function's file>` (kubeflow/trainer/backends/
    localprocess/constants.py, LOCAL_EXEC_JOB_TEMPLATE). The new environment sees this one's
    packages through PYTHONPATH, a view of them without pip and setuptools (ensurepip would
    find those and skip, and `pip` would then be this environment's), and pip installs only
    torch (for its torchrun) and satk8s into it, without their dependencies."""
    site = Path(sysconfig.get_paths()["purelib"])
    # Named site-packages: dill (datasets' fingerprints) pickles classes of modules outside
    # any site-packages by value, which fails for pyarrow's (dill/_dill.py, _is_builtin_module).
    view = tmp_path / "view" / "site-packages"
    view.mkdir(parents=True)
    for entry in site.iterdir():
        if not entry.name.startswith(
            (
                "pip",
                "setuptools",
                "_distutils_hack",
                "pkg_resources",
                "distutils-precedence",
                "__editable__",
            )
        ):
            (view / entry.name).symlink_to(entry)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(view))
    monkeypatch.setenv("PIP_NO_DEPS", "1")
    monkeypatch.setenv("PIP_IGNORE_INSTALLED", "1")
    spec = TrainJobSpec(
        backend="local",
        nodes=2,
        packages=["torch==2.13.0", f"satk8s @ {REPO.as_uri()}"],
        poll_s=1,
    )
    monkeypatch.setenv(SPEC_ENV, spec.to_env())
    dataset = _dataset(tmp_path, "set", sft_table(), "sft")
    reference = train_model(dataset, str(tmp_path / "one"), _config(random_tiny_dir, "sft", 1))
    config = _config(random_tiny_dir, "sft", 1)
    config = type(config)(config.model, config.train, type(config.distributed)(nodes=2))
    out = str(tmp_path / "train")
    summary = train_model(dataset, out, config)
    assert summary["trainjob"] == trainjob_name(out)
    assert finished_summary(out)["steps"] == 3
    # One torchrun process with the batch of one: one process's losses.
    assert summary["losses"] == pytest.approx(reference["losses"], rel=1e-6)
    # pip installed into the new environment only.
    assert not (site / "satk8s").exists() and (site / "__editable__.satk8s-0.1.0.pth").exists()
