"""Cluster settings: the chart's `satk8s-settings` ConfigMap (or a file exported from it) drives
what `satk8s grid compile` / `satk8s submit` produce for a cluster: the store, the Secrets and
their keys, the store endpoint. Read through the loopback Kubernetes API (`tests/kube_fake.py`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from satk8s.cli.main import app
from tests.kube_fake import NS, STORE_BUCKET, FakeCluster, kubeconfig

IMAGES = {
    "gpu": "registry.example/satk8s-gpu@sha256:" + "a" * 64,
    "cpu": "registry.example/satk8s-cpu@sha256:" + "b" * 64,
}


@pytest.fixture
def images(tmp_path: Path) -> Path:
    path = tmp_path / "digests.json"
    path.write_text(json.dumps(IMAGES))
    return path


@pytest.fixture
def kube_env(cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The environment of a user whose kubeconfig reaches the cluster and whose runs go to NS."""
    env = {"KUBECONFIG": str(kubeconfig(tmp_path, cluster.port)), "KFP_NAMESPACE": NS}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, args, env=env)


def _compile(args: list[str], out: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    result = _invoke(["grid", "compile", *args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    spec, *platform = list(yaml.safe_load_all(out.read_text()))
    return spec, (platform[0] if platform else {}), out.read_text()


def _executors(platform: dict[str, Any]) -> dict[str, Any]:
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


# -- the placeholder store ----------------------------------------------------------------------


def test_no_compiled_pipeline_names_a_placeholder_store(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    spec, _, text = _compile(["arith", "--images", str(images)], tmp_path / "arith.yaml")

    assert "s3://satk8s/store" not in text
    store = spec["root"]["inputDefinitions"]["parameters"]["store_root"]["defaultValue"]
    assert store == f"s3://{STORE_BUCKET}/satk8s"  # satk8s-settings' storeRoot


def test_compiling_for_a_cluster_without_a_store_fails_saying_how_to_set_one(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    cluster.configmaps["satk8s-settings"]["storeRoot"] = ""
    out = tmp_path / "arith.yaml"

    result = _invoke(["grid", "compile", "arith", "--images", str(images), "-o", str(out)])

    assert result.exit_code == 2, result.output
    assert "no store for the cluster" in result.output
    assert f"satk8s-settings in namespace {NS} has no storeRoot" in result.output
    assert "--set store.root=s3://" in result.output
    assert "STORE=s3://" in result.output
    assert not out.exists()


# -- secret names and keys ----------------------------------------------------------------------


def test_secret_names_and_keys_in_the_compiled_pipeline_come_from_the_settings(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    cluster.configmaps["satk8s-settings"].update(
        s3Secret="team-a-object-store",
        s3AccessKeyKey="access",
        s3SecretKeyKey="secret",
        hubTokenSecret="team-a-hf",
        hubTokenKey="token",
        s3EndpointUrl="http://minio.storage:9000",
        s3Region="eu-central-1",
    )

    _, platform, text = _compile(
        ["arith", "seeds=[0]", "--images", str(images)], tmp_path / "arith.yaml"
    )

    for name in ("satk8s-s3", "satk8s-hub-token", "satk8s-judge-api-key"):
        assert name not in text
    for executor in _executors(platform).values():
        secrets = {s["secretName"]: s["keyToEnv"] for s in executor["secretAsEnv"]}
        assert secrets == {
            "team-a-object-store": [
                {"envVar": "AWS_ACCESS_KEY_ID", "secretKey": "access"},
                {"envVar": "AWS_SECRET_ACCESS_KEY", "secretKey": "secret"},
            ],
            "team-a-hf": [{"envVar": "HF_TOKEN", "secretKey": "token"}],
        }
