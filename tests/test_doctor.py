"""`satk8s doctor` against a loopback server that plays the Kubernetes API (the paths the doctor
reads), KFP's healthz and an S3 endpoint (`tests/kube_fake.py`): one healthy namespace, then each
failure with its fix."""

from __future__ import annotations

import json

import pytest
import typer
from kubernetes import client
from typer.testing import CliRunner

from satk8s.cli.doctor_cmd import doctor
from satk8s.doctor import DoctorContext, DoctorOptions, Status, format_report, run_doctor
from satk8s.doctor.launcher import parse_launcher
from tests.kube_fake import ACCESS_KEY, BUCKET, NS, SECRET_KEY, FakeCluster, kubeconfig
from tests.kube_fake import node as _node


def _context(cluster: FakeCluster, **options) -> DoctorContext:
    configuration = client.Configuration(host=f"http://127.0.0.1:{cluster.port}")
    configuration.retries = 0
    return DoctorContext(
        api=client.ApiClient(configuration), options=DoctorOptions(namespace=NS, **options)
    )


def _results(cluster: FakeCluster, **options) -> dict:
    return {r.name: r for r in run_doctor(_context(cluster, **options))}


def test_healthy_namespace_passes_every_check(cluster):
    results = _results(cluster)

    assert {name: r.status for name, r in results.items()} == {
        "api": Status.OK,
        "gpu-nodes": Status.OK,
        "kfp-api": Status.OK,
        "kfp-launcher": Status.OK,
        "secrets": Status.OK,
        "bucket": Status.OK,
    }, format_report(results.values())
    assert "2 GPU node(s), 16 GPUs allocatable" in results["gpu-nodes"].message
    assert any("pool h100: 2 node(s), 2 ready, 16" in d for d in results["gpu-nodes"].details)
    assert "KFP 2.17.0 (multi-user)" in results["kfp-api"].message
    assert f"s3://{BUCKET}/kfp" in results["kfp-launcher"].message
    assert "Secret satk8s-s3" in results["bucket"].message
    # The probe went under the pipeline root and was cleaned up again.
    assert cluster.s3_keys_seen and cluster.s3_keys_seen[0].startswith("kfp/.satk8s-doctor/")
    assert cluster.s3_objects == {}


def test_report_never_prints_secret_values(cluster):
    report = format_report(run_doctor(_context(cluster)))

    assert SECRET_KEY not in report and ACCESS_KEY not in report and "hf_example" not in report


def test_unreachable_api_fails_once_and_skips_the_rest(cluster):
    configuration = client.Configuration(host="http://127.0.0.1:9")  # discard port: refused
    configuration.retries = 0
    ctx = DoctorContext(api=client.ApiClient(configuration), options=DoctorOptions(namespace=NS))

    results = {r.name: r for r in run_doctor(ctx)}

    assert results["api"].status is Status.FAIL
    assert "kubeconfig" in results["api"].fix
    assert {r.status for n, r in results.items() if n != "api"} == {Status.SKIP}


def test_no_gpu_nodes_fails_with_device_plugin_fix(cluster):
    cluster.nodes = [_node("cpu-1", "default-pool", 0)]

    result = _results(cluster)["gpu-nodes"]

    assert result.status is Status.FAIL
    assert "no node has allocatable nvidia.com/gpu" in result.message
    assert "device plugin" in result.fix


def test_gpu_capacity_without_allocatable_fails_and_names_the_node(cluster):
    cluster.nodes = [_node("h100-1", "h100", 8, allocatable=0)]

    result = _results(cluster)["gpu-nodes"]

    assert result.status is Status.FAIL
    assert "report GPU capacity but none is ready" in result.message


def test_broken_gpu_node_next_to_healthy_ones_warns(cluster):
    cluster.nodes.append(_node("h100-3", "h100", 8, ready=False))

    result = _results(cluster)["gpu-nodes"]

    assert result.status is Status.WARN
    assert "not Ready: h100-3" in result.fix


def test_chart_pool_matching_no_node_warns(cluster):
    settings = cluster.configmaps["satk8s-settings"]
    settings["gpuPools"] = json.dumps(
        [{"name": "a100", "nodeLabels": {"cloud.google.com/gke-nodepool": "a100"}}]
    )

    result = _results(cluster)["gpu-nodes"]

    assert result.status is Status.WARN
    assert "chart pool 'a100' matches no ready GPU node" in result.fix


def test_nodes_forbidden_explains_cluster_scope(cluster):
    cluster.nodes_status = 403

    result = _results(cluster)["gpu-nodes"]

    assert result.status is Status.FAIL
    assert "cluster-scoped" in result.message
    assert "rbac.clusterRead.enabled=true" in result.fix


def test_kfp_service_missing_fails(cluster):
    cluster.kfp_status = 404

    result = _results(cluster)["kfp-api"]

    assert result.status is Status.FAIL
    assert "ml-pipeline:8888" in result.message
    assert "--kfp-host" in result.fix


def test_kfp_host_reached_directly(cluster):
    result = _results(cluster, kfp_host=f"http://127.0.0.1:{cluster.port}/")["kfp-api"]

    assert result.status is Status.OK
    assert not any("/proxy/" in r for r in cluster.requests)


def test_kfp_host_refusing_asks_for_a_token(cluster):
    cluster.kfp_status = 401

    result = _results(cluster, kfp_host=f"http://127.0.0.1:{cluster.port}")["kfp-api"]

    assert result.status is Status.FAIL
    assert "--kfp-token" in result.fix


def test_kfp_host_answering_with_a_login_page_fails(cluster):
    cluster.kfp_body = "<html><body>Log in to Kubeflow</body></html>"

    result = _results(cluster, kfp_host=f"http://127.0.0.1:{cluster.port}")["kfp-api"]

    assert result.status is Status.FAIL
    assert "login page" in result.message


def test_kfp_host_unreachable_fails_with_port_forward_hint(cluster):
    result = _results(cluster, kfp_host="http://127.0.0.1:9")["kfp-api"]

    assert result.status is Status.FAIL
    assert "port-forward" in result.fix


def test_missing_launcher_configmap_fails_with_helm_fix(cluster):
    del cluster.configmaps["kfp-launcher"]

    results = _results(cluster)

    assert results["kfp-launcher"].status is Status.FAIL
    assert "no ConfigMap kfp-launcher in namespace team-a" in results["kfp-launcher"].message
    assert "helm upgrade --install satk8s helm/satk8s -n team-a" in results["kfp-launcher"].fix
    assert results["bucket"].status is Status.FAIL  # nothing to probe without a root


def test_launcher_with_a_non_s3_root_fails(cluster):
    cluster.configmaps["kfp-launcher"]["defaultPipelineRoot"] = "minio://mlpipeline/v2/artifacts"

    result = _results(cluster)["kfp-launcher"]

    assert result.status is Status.FAIL
    assert "not s3://bucket[/prefix]" in result.message


def test_launcher_secret_ref_without_keys_is_rejected():
    providers = (
        "s3:\n  default:\n    endpoint: s3.amazonaws.com\n    credentials:\n      fromEnv: false\n"
    )

    with pytest.raises(ValueError, match="secretRef lacks secretName"):
        parse_launcher({"defaultPipelineRoot": "s3://b/p", "providers": providers})


def test_missing_settings_configmap_means_chart_not_installed(cluster):
    del cluster.configmaps["satk8s-settings"]

    result = _results(cluster)["secrets"]

    assert result.status is Status.FAIL
    assert "chart is not installed" in result.message
    assert "helm upgrade --install" in result.fix


def test_missing_secret_fails_with_kubectl_fix(cluster):
    del cluster.secrets["satk8s-hub-token"]

    result = _results(cluster)["secrets"]

    assert result.status is Status.FAIL
    assert "Secret satk8s-hub-token (hub token) is missing" in result.message
    assert "kubectl -n team-a create secret generic satk8s-hub-token" in result.fix
    assert "--from-literal=HF_TOKEN=<value>" in result.fix


def test_secret_without_its_key_fails(cluster):
    cluster.secrets["satk8s-s3"] = {"AWS_ACCESS_KEY_ID": ACCESS_KEY}

    results = _results(cluster)

    assert results["secrets"].status is Status.FAIL
    assert "no value for AWS_SECRET_ACCESS_KEY" in results["secrets"].message
    assert results["bucket"].status is Status.FAIL


@pytest.mark.parametrize(
    ("status", "code", "fix"),
    [
        (403, "AccessDenied", "s3:PutObject"),
        (403, "InvalidAccessKeyId", "update Secret satk8s-s3"),
        (404, "NoSuchBucket", "create the bucket"),
    ],
)
def test_bucket_write_failures_say_what_to_grant_or_fix(cluster, status, code, fix):
    cluster.s3_put = (status, code)

    result = _results(cluster)["bucket"]

    assert result.status is Status.FAIL
    assert code in result.message
    assert fix in result.fix


def test_bucket_option_overrides_the_pipeline_root(cluster):
    result = _results(cluster, bucket="s3://someone-elses-bucket/x")["bucket"]

    assert result.status is Status.FAIL
    assert "NoSuchBucket" in result.message


def test_bucket_with_credentials_from_env(cluster, monkeypatch):
    settings = parse_launcher(cluster.configmaps["kfp-launcher"])
    assert settings.secret_ref is not None
    import yaml

    providers = yaml.safe_load(cluster.configmaps["kfp-launcher"]["providers"])
    providers["s3"]["default"]["credentials"] = {"fromEnv": True}
    cluster.configmaps["kfp-launcher"]["providers"] = yaml.safe_dump(providers)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")

    result = _results(cluster)["bucket"]

    assert result.status is Status.OK
    assert "credentials from the environment" in result.message


def _cli(args: list[str]):
    app = typer.Typer()
    app.command()(doctor)
    return CliRunner().invoke(app, args)


def test_cli_healthy_exits_zero_with_namespace_from_context(cluster, tmp_path):
    config = kubeconfig(tmp_path, cluster.port)

    result = _cli(["--kubeconfig", str(config), "--context", "fake"])

    assert result.exit_code == 0, result.output
    assert f"namespace {NS}" in result.output
    assert result.output.count("\nok ") == 6


def test_cli_failure_exits_one_and_prints_the_fix(cluster, tmp_path):
    del cluster.secrets["satk8s-hub-token"]
    config = kubeconfig(tmp_path, cluster.port)

    result = _cli(["--kubeconfig", str(config), "--context", "fake", "--only", "secrets"])

    assert result.exit_code == 1
    assert "FAIL  secrets" in result.output
    assert "fix: kubectl -n team-a create secret generic satk8s-hub-token" in result.output


def test_cli_rejects_an_unknown_check(cluster, tmp_path):
    result = _cli(["--kubeconfig", str(kubeconfig(tmp_path, cluster.port)), "--only", "gpu"])

    assert result.exit_code == 2
    assert "unknown check(s) ['gpu']" in result.output


def test_cli_without_kubeconfig_fails_with_fix(tmp_path):
    result = _cli(["--kubeconfig", str(tmp_path / "missing")])

    assert result.exit_code == 1
    assert "no usable Kubernetes configuration" in result.output
    assert "fix:" in result.output


def test_cli_help_lists_every_option():
    result = _cli(["--help"])

    assert result.exit_code == 0, result.output
    for option in (
        "--namespace",
        "--kfp-host",
        "--kfp-token",
        "--bucket",
        "--kubeconfig",
        "--context",
        "--in-cluster",
        "--only",
    ):
        assert option in result.output


def test_in_cluster_uses_the_pod_namespace(cluster, tmp_path, monkeypatch):
    from satk8s.doctor import cluster as cluster_module

    def fake_incluster(client_configuration):
        client_configuration.host = f"http://127.0.0.1:{cluster.port}"

    namespace_file = tmp_path / "namespace"
    namespace_file.write_text(f"{NS}\n")
    monkeypatch.setattr(cluster_module.config, "load_incluster_config", fake_incluster)
    monkeypatch.setattr(cluster_module, "_SA_NAMESPACE", namespace_file)

    result = _cli(["--in-cluster", "--only", "kfp-launcher,bucket"])

    assert result.exit_code == 0, result.output
    assert f"namespace {NS}" in result.output
    assert "ok    bucket" in result.output


def test_the_store_bucket_is_probed_with_the_credentials_pods_get(cluster):
    result = _results(cluster)["store"]

    assert result.status is Status.OK, result.message
    assert "s3://acme-satk8s-store/satk8s" in result.message
    # Written, read back and deleted, signed with the access key of the Secret the pods get.
    written = [k for k in cluster.s3_keys_seen if k.startswith("satk8s/.satk8s-doctor/")]
    assert len(written) == 1
    assert all(ACCESS_KEY in auth for auth in cluster.s3_auth_seen)
    assert cluster.s3_objects == {}
