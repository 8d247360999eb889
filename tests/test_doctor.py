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
from satk8s.cluster.launcher import parse_launcher
from satk8s.doctor import DoctorContext, DoctorOptions, Status, format_report, run_doctor
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
        "secrets": Status.OK,
        "runner": Status.OK,
        "store": Status.OK,
        "kfp-launcher": Status.OK,
        "bucket": Status.OK,
        # Multi-user KFP with an s3:// pipeline root: the UI's own credentials decide.
        "ui-reports": Status.WARN,
        "trainer": Status.OK,
    }, format_report(results.values())
    assert "2 GPU node(s), 16 GPUs allocatable" in results["gpu-nodes"].message
    assert any("pool h100: 2 node(s), 2 ready, 16" in d for d in results["gpu-nodes"].details)
    assert "KFP 2.17.0 (multi-user)" in results["kfp-api"].message
    assert f"s3://{BUCKET}/kfp" in results["kfp-launcher"].message
    assert "Secret satk8s-s3" in results["bucket"].message
    # One probe under the store root, one under the pipeline root; both cleaned up again.
    assert [key.split("/.satk8s-doctor/")[0] for key in cluster.s3_keys_seen] == ["satk8s", "kfp"]
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


def test_missing_launcher_configmap_fails_saying_kfp_creates_it(cluster):
    del cluster.configmaps["kfp-launcher"]

    results = _results(cluster)

    assert results["kfp-launcher"].status is Status.FAIL
    assert "no ConfigMap kfp-launcher in namespace team-a" in results["kfp-launcher"].message
    assert "KFP creates it" in results["kfp-launcher"].message
    assert "profile namespace" in results["kfp-launcher"].fix
    assert results["bucket"].status is Status.FAIL  # nothing to probe without a root


def test_a_launcher_root_other_than_the_settings_fails_with_the_setup_command(cluster):
    # The profile controller's root, before `satk8s setup launcher` ran.
    cluster.configmaps["kfp-launcher"] = {
        "defaultPipelineRoot": f"minio://mlpipeline/private-artifacts/{NS}/v2/artifacts"
    }

    result = _results(cluster)["kfp-launcher"]

    assert result.status is Status.FAIL
    assert f"but satk8s-settings names s3://{BUCKET}/kfp" in result.message
    assert result.fix.startswith(f"satk8s setup launcher -n {NS}")


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
    assert result.output.count("\nok ") == 9
    assert "\nWARN  ui-reports" in result.output


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
    from satk8s.cluster import kube as cluster_module

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


# -- KFP version ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "status", "text"),
    [
        ("2.14.0", Status.FAIL, "optional: true"),
        ("2.15.0", Status.OK, "KFP 2.15.0"),
        ("unknown", Status.WARN, "could not read the KFP backend version"),
        ("2.18.1", Status.WARN, "newer than satk8s is checked against (2.15 to 2.17)"),
    ],
)
def test_the_backend_version_comes_from_healthz_tag_name(cluster, tag, status, text):
    cluster.kfp_body = json.dumps({**json.loads(cluster.kfp_body), "tag_name": tag})

    result = _results(cluster)["kfp-api"]

    assert result.status is status, result
    assert text in f"{result.message} {result.fix}"


# -- KFP's own default pipeline root --------------------------------------------------------------


def test_the_profile_controllers_minio_root_is_no_failure_when_the_chart_sets_no_root(cluster):
    cluster.configmaps["kfp-launcher"] = {
        "defaultPipelineRoot": f"minio://mlpipeline/private-artifacts/{NS}/v2/artifacts",
        "clusterDomain": ".svc.cluster.local",
    }
    cluster.configmaps["satk8s-settings"]["pipelineRoot"] = ""

    results = _results(cluster)

    launcher = results["kfp-launcher"]
    assert launcher.status is Status.OK, launcher
    assert "Secret mlpipeline-minio-artifact" in launcher.message
    assert results["bucket"].status is Status.OK
    assert "KFP's own object store; not probed" in results["bucket"].message
    assert results["ui-reports"].status is Status.OK
    assert results["store"].status is Status.OK  # satk8s's outputs still go to the store


def test_an_s3_root_without_providers_fails_with_the_setup_command(cluster):
    del cluster.configmaps["kfp-launcher"]["providers"]

    result = _results(cluster)["kfp-launcher"]

    assert result.status is Status.FAIL
    assert "has no providers.s3 section" in result.message
    assert result.fix.startswith(f"satk8s setup launcher -n {NS}")


def test_providers_that_differ_from_the_settings_warn(cluster):
    cluster.configmaps["satk8s-settings"]["s3Region"] = "eu-west-1"

    result = _results(cluster)["kfp-launcher"]

    assert result.status is Status.WARN
    assert "differs from what satk8s-settings says" in result.message


# -- the run ServiceAccount -----------------------------------------------------------------------


def test_the_runner_account_shows_its_identity_and_pull_secrets(cluster):
    cluster.service_accounts["satk8s-runner"] = {
        "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/runs"},
        "imagePullSecrets": ["regcred"],
    }
    cluster.secrets["regcred"] = {".dockerconfigjson": "{}"}

    result = _results(cluster)["runner"]

    assert result.status is Status.OK, result
    assert "runs execute as ServiceAccount satk8s-runner" in result.message
    assert "cloud identity: AWS IRSA role arn:aws:iam::123456789012:role/runs" in result.details
    assert "image pull secret regcred: present" in result.details


def test_a_missing_runner_account_fails(cluster):
    cluster.service_accounts.clear()

    result = _results(cluster)["runner"]

    assert result.status is Status.FAIL
    assert "no ServiceAccount satk8s-runner in team-a" in result.message


def test_a_missing_pull_secret_and_no_identity_for_env_credentials_warn(cluster):
    cluster.service_accounts["satk8s-runner"]["imagePullSecrets"] = ["regcred"]
    cluster.configmaps["satk8s-settings"]["s3Secret"] = ""

    result = _results(cluster)["runner"]

    assert result.status is Status.WARN
    assert "image pull secret regcred does not exist" in result.message
    assert "has no cloud identity annotation" in result.message
    assert "serviceAccount.awsRoleArn" in result.fix


# -- the store ------------------------------------------------------------------------------------


def test_no_store_in_the_settings_warns_with_the_helm_fix(cluster):
    cluster.configmaps["satk8s-settings"]["storeRoot"] = ""

    result = _results(cluster)["store"]

    assert result.status is Status.WARN
    assert "--set store.root=s3://<bucket>/<prefix>" in result.fix


def test_a_store_that_does_not_read_back_fails(cluster):
    cluster.s3_get_corrupt = True

    result = _results(cluster)["store"]

    assert result.status is Status.FAIL
    assert "read back other bytes than were written" in result.message


def test_a_store_write_denied_names_the_secret_to_grant(cluster):
    cluster.s3_put = (403, "AccessDenied")

    result = _results(cluster)["store"]

    assert result.status is Status.FAIL
    assert "cannot write s3://acme-satk8s-store/satk8s/.satk8s-doctor/" in result.message
    assert "grant the keys in Secret satk8s-s3 s3:PutObject" in result.fix
    assert "arn:aws:s3:::acme-satk8s-store/satk8s/*" in result.fix


def test_a_store_secret_without_its_keys_fails_before_probing(cluster):
    cluster.secrets["satk8s-s3"] = {"AWS_ACCESS_KEY_ID": ACCESS_KEY}

    result = _results(cluster)["store"]

    assert result.status is Status.FAIL
    assert "the step pods would have no S3 keys" in result.message
    assert not any(k.startswith("satk8s/") for k in cluster.s3_keys_seen)


def test_a_bad_settings_key_is_named(cluster):
    cluster.configmaps["satk8s-settings"]["storeRoot"] = "s3://<bucket>/satk8s"

    results = _results(cluster)

    assert results["secrets"].status is Status.FAIL
    assert "config field 'storeRoot': 's3://<bucket>/satk8s' is a placeholder" in (
        results["secrets"].message
    )
    assert results["store"].status is Status.FAIL


# -- the UI ---------------------------------------------------------------------------------------


def test_single_user_kfp_shows_reports_with_the_launchers_credentials(cluster):
    cluster.kfp_body = json.dumps({**json.loads(cluster.kfp_body), "multi_user": False})

    result = _results(cluster)["ui-reports"]

    assert result.status is Status.OK


def test_multi_user_kfp_with_an_s3_root_says_what_the_admin_must_grant(cluster):
    result = _results(cluster)["ui-reports"]

    assert result.status is Status.WARN
    assert "with the UI's own credentials" in result.message
    assert "ml-pipeline-ui" in result.fix and f"arn:aws:s3:::{BUCKET}/*" in result.fix
    assert "satk8s runs status RUN_ID" in result.fix


def test_trainer_check_warns_without_kubeflow_trainer_and_fails_without_its_runtime(cluster):
    assert (
        "torch-distributed"
        in _results(
            cluster,
        )["trainer"].message
    )
    cluster.cluster_runtimes = {}
    missing = _results(cluster)["trainer"]
    assert missing.status is Status.FAIL
    assert "no ClusterTrainingRuntime torch-distributed" in missing.message
    cluster.trainer_installed = False
    absent = _results(cluster)["trainer"]
    assert absent.status is Status.WARN
    assert "Kubeflow Trainer is not installed" in absent.message
    assert "compute.train.nodes=1" in absent.fix
