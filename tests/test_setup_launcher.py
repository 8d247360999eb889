"""`satk8s setup launcher`: satk8s's keys merged into KFP's own kfp-launcher ConfigMap with a
server-side apply, against the loopback Kubernetes API (`tests/kube_fake.py`) playing a
multi-user profile namespace as KFP 2.17's profile controller leaves it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from satk8s.cli.main import app
from satk8s.doctor import DoctorContext, DoctorOptions, Status, run_doctor
from tests.kube_fake import BUCKET, NS, FakeCluster, kubeconfig, settings_data


@pytest.fixture
def profile(cluster: FakeCluster) -> FakeCluster:
    """A profile namespace before satk8s: KFP's objects, then the chart's settings and Secret."""
    cluster.kfp_profile_namespace()
    cluster.configmaps["satk8s-settings"] = settings_data(
        s3EndpointUrl=f"http://127.0.0.1:{cluster.port}"
    )
    cluster.secrets["satk8s-s3"] = {"AWS_ACCESS_KEY_ID": "AKIAX", "AWS_SECRET_ACCESS_KEY": "sk"}
    cluster.service_accounts["satk8s-runner"] = {"annotations": {}, "imagePullSecrets": []}
    return cluster


def _setup(cluster: FakeCluster, tmp_path: Path, *args: str, input: str | None = None):
    config = kubeconfig(tmp_path, cluster.port)
    return CliRunner().invoke(
        app, ["setup", "launcher", "--kubeconfig", str(config), "-n", NS, *args], input=input
    )


def _patches(cluster: FakeCluster) -> list[dict]:
    return [r for r in cluster.requests if r["method"] == "PATCH"]


def test_dry_run_shows_the_change_and_applies_nothing(profile: FakeCluster, tmp_path: Path):
    result = _setup(profile, tmp_path, "--dry-run")

    assert result.exit_code == 0, result.output
    out = result.output
    assert f"ConfigMap kfp-launcher in namespace {NS}: satk8s's keys, from satk8s-settings" in out
    assert f"-defaultPipelineRoot: minio://mlpipeline/private-artifacts/{NS}/v2/artifacts" in out
    assert f"+defaultPipelineRoot: s3://{BUCKET}/kfp" in out
    assert "+providers: |" in out and "+          secretName: satk8s-s3" in out
    assert "clusterDomain" not in out  # not satk8s's key: not shown, not touched
    assert "dry run: nothing applied" in out
    assert _patches(profile) == []


def test_apply_merges_only_satk8s_keys_with_a_server_side_apply(
    profile: FakeCluster, tmp_path: Path
):
    result = _setup(profile, tmp_path, "--yes")

    assert result.exit_code == 0, result.output
    (patch,) = _patches(profile)
    assert patch["path"] == f"/api/v1/namespaces/{NS}/configmaps/kfp-launcher"
    assert patch["content_type"] == "application/apply-patch+yaml"
    assert patch["query"] == {"fieldManager": ["satk8s"], "force": ["true"]}
    assert patch["body"]["metadata"] == {"name": "kfp-launcher", "namespace": NS}
    assert set(patch["body"]["data"]) == {"defaultPipelineRoot", "providers"}
    data = profile.configmaps["kfp-launcher"]
    assert data["clusterDomain"] == ".svc.cluster.local"  # KFP's key, left as it was
    assert data["defaultPipelineRoot"] == f"s3://{BUCKET}/kfp"
    default = yaml.safe_load(data["providers"])["s3"]["default"]
    assert default == {
        "endpoint": f"127.0.0.1:{profile.port}",
        "region": "us-east-1",
        "disableSSL": True,
        "forcePathStyle": True,
        "credentials": {
            "fromEnv": False,
            "secretRef": {
                "secretName": "satk8s-s3",
                "accessKeyKey": "AWS_ACCESS_KEY_ID",
                "secretKeyKey": "AWS_SECRET_ACCESS_KEY",
            },
        },
    }
    assert "satk8s doctor -n team-a --only kfp-launcher,bucket" in result.output

    # The doctor now finds the root and the provider the settings name, and the bucket writable.
    configuration = client.Configuration(host=f"http://127.0.0.1:{profile.port}")
    ctx = DoctorContext(api=client.ApiClient(configuration), options=DoctorOptions(namespace=NS))
    results = {r.name: r for r in run_doctor(ctx, ["kfp-launcher", "bucket"])}
    assert results["kfp-launcher"].status is Status.OK, results["kfp-launcher"]
    assert results["bucket"].status is Status.OK, results["bucket"]

    # A second run changes nothing and sends nothing.
    again = _setup(profile, tmp_path, "--yes")
    assert "already has satk8s's settings" in again.output
    assert len(_patches(profile)) == 1


def test_other_providers_and_s3_overrides_are_kept(profile: FakeCluster, tmp_path: Path):
    theirs = {
        "gs": {"default": {"credentials": {"fromEnv": True}}},
        "s3": {"Overrides": [{"bucketName": "legacy", "keyPrefix": "", "endpoint": "old:9000"}]},
    }
    profile.configmaps["kfp-launcher"]["providers"] = yaml.safe_dump(theirs)

    result = _setup(profile, tmp_path, "--yes")

    assert result.exit_code == 0, result.output
    providers = yaml.safe_load(profile.configmaps["kfp-launcher"]["providers"])
    assert providers["gs"] == theirs["gs"]
    assert providers["s3"]["Overrides"] == theirs["s3"]["Overrides"]
    assert providers["s3"]["default"]["endpoint"] == f"127.0.0.1:{profile.port}"


def test_without_a_pipeline_root_only_the_provider_is_merged(profile: FakeCluster, tmp_path: Path):
    profile.configmaps["satk8s-settings"]["pipelineRoot"] = ""

    result = _setup(profile, tmp_path, "--yes")

    assert result.exit_code == 0, result.output
    (patch,) = _patches(profile)
    assert set(patch["body"]["data"]) == {"providers"}
    root = profile.configmaps["kfp-launcher"]["defaultPipelineRoot"]
    assert root == f"minio://mlpipeline/private-artifacts/{NS}/v2/artifacts"


def test_declining_applies_nothing(profile: FakeCluster, tmp_path: Path):
    result = _setup(profile, tmp_path, input="n\n")

    assert result.exit_code == 1
    assert "Apply these keys with a server-side apply?" in result.output
    assert "nothing applied" in result.output
    assert _patches(profile) == []


def test_a_namespace_without_kfp_launcher_is_not_given_one(profile: FakeCluster, tmp_path: Path):
    del profile.configmaps["kfp-launcher"]

    result = _setup(profile, tmp_path, "--yes")

    assert result.exit_code == 2
    assert f"no ConfigMap kfp-launcher in namespace {NS}. KFP creates it" in result.output
    assert "pipelines.kubeflow.org/enabled=true" in result.output
    assert _patches(profile) == []


def test_providers_that_are_not_yaml_are_left_for_a_person(profile: FakeCluster, tmp_path: Path):
    profile.configmaps["kfp-launcher"]["providers"] = "s3: [unclosed"

    result = _setup(profile, tmp_path, "--yes")

    assert result.exit_code == 2
    assert "kfp-launcher's providers is not valid YAML" in result.output
    assert "fix or remove that key by hand" in result.output
    assert _patches(profile) == []


def test_settings_from_a_file_drive_the_merge(profile: FakeCluster, tmp_path: Path):
    from satk8s.cluster.settings import ClusterSettings

    path = tmp_path / "settings.yaml"
    path.write_text(ClusterSettings(pipeline_root="s3://other-runs/kfp").export_yaml())

    result = _setup(profile, tmp_path, "--yes", "--settings", str(path))

    assert result.exit_code == 0, result.output
    data = profile.configmaps["kfp-launcher"]
    assert data["defaultPipelineRoot"] == "s3://other-runs/kfp"
    credentials = yaml.safe_load(data["providers"])["s3"]["default"]["credentials"]
    assert credentials == {"fromEnv": True}  # that file names no S3 Secret
