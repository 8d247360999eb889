"""The satk8s chart, rendered by Helm's own Go engine (helm-python-sdk, no helm binary) for the
default values and for full values, every manifest checked against the Kubernetes OpenAPI
schemas (kubernetes-validate, offline), plus the security settings and the values schema."""

from __future__ import annotations

import base64
import copy
import json
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from satk8s.cluster.launcher import merged_keys, parse_launcher
from satk8s.cluster.settings import ClusterSettings
from satk8s.doctor.secrets import SECRETS as DOCTOR_SECRETS
from tests.kube_fake import KFP_PROFILE_OBJECTS

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "satk8s"
NS = "team-a"

K8S_VERSION = latest_version()
"""The newest Kubernetes whose schemas kubernetes-validate ships (offline)."""

CRD_KINDS = {
    "ResourceFlavor",
    "ClusterQueue",
    "LocalQueue",
    "WorkloadPriorityClass",
    "ExternalSecret",
}
"""Custom resources (Kueue, external-secrets): kubernetes-validate has no schema for them, so
they are skipped there and checked by the structural tests below instead."""

CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "ResourceFlavor",
    "ClusterQueue",
    "WorkloadPriorityClass",
}

DIGEST = "sha256:" + "ab" * 32
FULL_VALUES = {
    "store": {
        "root": "s3://acme-ml-store/satk8s",
        "pipelineRoot": "s3://acme-ml-runs/satk8s",
        "endpoint": "minio-service.kubeflow:9000",
        "region": "us-east-1",
        "disableSSL": True,
        "forcePathStyle": True,
    },
    "serviceAccount": {
        "name": "satk8s-runner",
        "awsRoleArn": "arn:aws:iam::123456789012:role/satk8s-runs",
        "annotations": {"example.com/team": "ml"},
        "imagePullSecrets": ["regcred"],
    },
    "rbac": {
        "extraRules": [
            {
                "apiGroups": [""],
                "resources": ["persistentvolumeclaims"],
                "verbs": ["get", "create", "delete"],
            }
        ],
        "clusterRead": {
            "enabled": True,
            "subjects": [
                {"kind": "Group", "name": "ml-researchers", "apiGroup": "rbac.authorization.k8s.io"}
            ],
        },
    },
    "secrets": {
        "s3": {
            "source": "create",
            "accessKeyId": "AKIAEXAMPLE0000000001",
            "secretAccessKey": "example/secret+key",
        },
        "hubToken": {
            "source": "external",
            "external": {"remoteKey": "ml/hub", "property": "token"},
        },
        "judgeApiKey": {"source": "existing", "name": "judge-key", "key": "OPENAI_API_KEY"},
    },
    "externalSecrets": {"secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault"}},
    "gpuPools": [
        {
            "name": "h100",
            "gpu": "h100-80gb",
            "nodeLabels": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "quota": {"gpus": 16, "cpu": "200", "memory": "1800Gi"},
        },
        {
            # No nodeLabels: GKE's accelerator label for L4 nodes, from the GPU catalogue.
            "name": "l4",
            "gpu": "l4",
            "cloud": "gke",
            "quota": {"gpus": 8, "cpu": 48, "memory": "192Gi"},
        },
    ],
    "kueue": {
        "enabled": True,
        "cohort": "ml",
        "cpuQuota": {"cpu": "32", "memory": "128Gi"},
        "priorityClasses": {
            "create": True,
            "classes": [
                {"name": "satk8s-shared", "value": 10000, "roles": ["generate", "judge", "cpu"]},
                {"name": "satk8s-cells", "value": 1000, "roles": ["train", "evaluate"]},
            ],
        },
    },
    "tests": {"image": f"registry.example.com/acme/satk8s-cpu@{DIGEST}"},
}


def render(values: dict | None = None) -> tuple[list[dict], str]:
    """The chart's objects and its NOTES, as `helm install -n team-a` would render them."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="satk8s", namespace=NS, is_install=True)
    notes = rendered.pop("satk8s/templates/NOTES.txt", "")
    objects = [
        doc
        for text in rendered.values()
        for doc in yaml.safe_load_all(text)
        if doc  # templates switched off render to nothing
    ]
    return objects, notes


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def default() -> tuple[list[dict], str]:
    return render()


@pytest.fixture(scope="module")
def full() -> tuple[list[dict], str]:
    return render(FULL_VALUES)


# -- Every manifest is a valid Kubernetes object ---------------------------------------------


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default", "full"])
def test_every_manifest_validates_against_current_kubernetes(values):
    objects, _ = render(values)
    validated, skipped = [], []
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            skipped.append(obj["kind"])
            continue
        # strict: unknown fields are errors too, as `kubectl apply --validate=strict` would say
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        validated.append(obj["kind"])
    assert validated
    if values is None:
        assert skipped == []
    else:
        assert sorted(set(skipped)) == sorted(CRD_KINDS)


def test_default_values_make_just_the_namespace_basics(default):
    objects, _ = default

    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == [
        ("ConfigMap", "satk8s-settings"),
        ("Role", "satk8s-runner"),
        ("RoleBinding", "satk8s-runner"),
        ("ServiceAccount", "satk8s-runner"),
    ]
    assert all(o["metadata"]["namespace"] == NS for o in objects)


def test_full_values_make_every_optional_object(full):
    objects, _ = full
    kinds = {o["kind"] for o in objects}

    assert kinds == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Secret",
        "ExternalSecret",
        "ConfigMap",
        "ResourceFlavor",
        "ClusterQueue",
        "LocalQueue",
        "WorkloadPriorityClass",
        "Pod",
    }
    assert all(o["metadata"]["labels"]["app.kubernetes.io/version"] for o in objects)


def test_chart_version_follows_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    with helm.Chart.load(CHART) as chart:
        meta = chart.metadata

    assert meta["version"] == project["version"]
    assert meta["appVersion"] == project["version"]


def test_helm_lint_finds_no_warnings_or_errors():
    report = helm.lint(
        str(CHART), FULL_VALUES, strict=True, namespace=NS, kube_version=f"v{K8S_VERSION}"
    )

    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# -- Security ----------------------------------------------------------------------------------


def test_no_cluster_scoped_object_unless_enabled(default):
    objects, _ = default

    assert [o["kind"] for o in objects if o["kind"] in CLUSTER_SCOPED] == []


def test_cluster_read_is_nodes_only_and_bound_to_the_given_subjects(full):
    objects, _ = full
    (role,) = by_kind(objects, "ClusterRole")
    (binding,) = by_kind(objects, "ClusterRoleBinding")

    assert role["metadata"]["name"] == f"{NS}-satk8s-node-reader"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == FULL_VALUES["rbac"]["clusterRead"]["subjects"]


def test_cluster_read_defaults_to_the_run_service_account():
    objects, _ = render({"rbac": {"clusterRead": {"enabled": True}}})

    (binding,) = by_kind(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "satk8s-runner", "namespace": NS}
    ]
    assert {o["kind"] for o in objects} & CLUSTER_SCOPED == {"ClusterRole", "ClusterRoleBinding"}


def test_run_role_is_least_privilege(default):
    objects, _ = default
    role = one(objects, "Role", "satk8s-runner")

    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        ), rule
    # Exactly what KFP 2.17's driver and launcher and Argo's executor do in a run's pods.
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["kfp-launcher", "satk8s-settings"],
            "verbs": ["get"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            # The S3 keys, and KFP's own store's keys for its default minio:// root.
            "resourceNames": ["satk8s-s3", "mlpipeline-minio-artifact"],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    ]
    binding = one(objects, "RoleBinding", "satk8s-runner")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "satk8s-runner", "namespace": NS}
    ]


def test_with_its_own_pipeline_root_the_role_reads_only_the_s3_secret(full):
    objects, _ = full
    role = one(objects, "Role", "satk8s-runner")

    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert [r["resourceNames"] for r in secret_rules] == [["satk8s-s3"]]


def test_cloud_identity_means_no_secret_access_at_all():
    objects, _ = render(
        {
            "store": {"pipelineRoot": "s3://acme-ml-runs/kfp"},
            "secrets": {"s3": {"source": "fromEnv"}},
            "serviceAccount": {"awsRoleArn": "arn:aws:iam::123456789012:role/r"},
        }
    )

    role = one(objects, "Role", "satk8s-runner")
    assert not any("secrets" in r["resources"] for r in role["rules"])
    assert by_kind(objects, "Secret") == []
    settings = one(objects, "ConfigMap", "satk8s-settings")["data"]
    assert settings["s3Secret"] == ""  # the compiler then references no S3 Secret


def test_every_pod_runs_as_non_root_with_no_privileges(full):
    objects, _ = full
    pods = by_kind(objects, "Pod")

    assert pods, "the full values render the helm-test pod"
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] >= 1000
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["serviceAccountName"] == "satk8s-runner"
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert "@sha256:" in container["image"]
            assert container["resources"]["limits"]


def test_service_account_carries_the_cloud_identity(full):
    objects, _ = full
    sa = one(objects, "ServiceAccount", "satk8s-runner")

    assert sa["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/satk8s-runs",
        "example.com/team": "ml",
    }
    assert sa["imagePullSecrets"] == [{"name": "regcred"}]


def test_workload_identity_annotations_for_gke_and_azure():
    objects, _ = render(
        {
            "serviceAccount": {
                "gcpServiceAccount": "runs@acme.iam.gserviceaccount.com",
                "azureClientId": "00000000-0000-0000-0000-000000000000",
            }
        }
    )

    annotations = one(objects, "ServiceAccount", "satk8s-runner")["metadata"]["annotations"]
    assert annotations["iam.gke.io/gcp-service-account"] == "runs@acme.iam.gserviceaccount.com"
    assert (
        annotations["azure.workload.identity/client-id"] == "00000000-0000-0000-0000-000000000000"
    )


# -- What KFP and satk8s read ------------------------------------------------------------------


def _settings(objects: list[dict]) -> ClusterSettings:
    data = one(objects, "ConfigMap", "satk8s-settings")["data"]
    return ClusterSettings.from_data(data, "rendered chart", NS)


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default", "full"])
def test_the_sdk_reads_every_settings_key_the_chart_writes(values):
    objects, _ = render(values)

    settings = _settings(objects)  # an unknown or malformed key would raise here

    assert settings.service_account == "satk8s-runner"
    if values is None:
        assert (settings.store_root, settings.pipeline_root) == ("", "")
    else:
        assert settings.store_root == "s3://acme-ml-store/satk8s"
        assert settings.pipeline_root == "s3://acme-ml-runs/satk8s"


def test_the_launcher_keys_follow_the_chart_values(full):
    # What `satk8s setup launcher` merges into KFP's kfp-launcher, from the chart's settings.
    objects, _ = full
    keys = merged_keys({"clusterDomain": ".svc.cluster.local"}, _settings(objects))

    assert keys["defaultPipelineRoot"] == "s3://acme-ml-runs/satk8s"
    assert yaml.safe_load(keys["providers"]) == {
        "s3": {
            "default": {
                "endpoint": "minio-service.kubeflow:9000",
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
        }
    }
    launcher = parse_launcher(keys)  # the doctor's own reader agrees
    assert launcher.secret_ref is not None and launcher.secret_ref.name == "satk8s-s3"


def test_settings_leave_aws_endpoints_to_the_client(default):
    objects, _ = default
    settings = one(objects, "ConfigMap", "satk8s-settings")["data"]

    # boto3 picks AWS's regional endpoint itself; path style is only forced off AWS.
    assert settings["s3EndpointUrl"] == ""
    assert settings["s3AddressingStyle"] == "auto"
    provider = yaml.safe_load(merged_keys({}, _settings(objects))["providers"])["s3"]["default"]
    assert (provider["endpoint"], provider["forcePathStyle"]) == ("s3.amazonaws.com", False)


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default", "full"])
def test_the_chart_never_renders_kfp_launcher(values):
    objects, _ = render(values)

    assert [o for o in objects if o["metadata"]["name"] == "kfp-launcher"] == []


def test_created_s3_secret_holds_the_keys_kfp_launcher_names(full):
    objects, _ = full
    secret = one(objects, "Secret", "satk8s-s3")

    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE0000000001",
        "AWS_SECRET_ACCESS_KEY": "example/secret+key",
    }


def test_external_secret_syncs_the_hub_token_from_the_store(full):
    objects, _ = full
    (external,) = by_kind(objects, "ExternalSecret")

    assert external["apiVersion"] == "external-secrets.io/v1"
    assert external["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "vault"}
    assert external["spec"]["target"]["name"] == "satk8s-hub-token"
    assert external["spec"]["data"] == [
        {"secretKey": "HF_TOKEN", "remoteRef": {"key": "ml/hub", "property": "token"}}
    ]


def test_settings_configmap_names_every_secret_the_doctor_checks(full):
    objects, _ = full
    settings = one(objects, "ConfigMap", "satk8s-settings")["data"]

    for _, name_key, key_keys in DOCTOR_SECRETS:
        assert name_key in settings and all(k in settings for k in key_keys)
    assert settings["s3Secret"] == "satk8s-s3"
    assert settings["s3EndpointUrl"] == "http://minio-service.kubeflow:9000"  # disableSSL
    assert settings["s3AddressingStyle"] == "path"
    assert settings["s3Region"] == "us-east-1"
    assert settings["hubTokenSecret"] == "satk8s-hub-token"
    assert settings["judgeApiKeySecret"] == "judge-key"
    pools = json.loads(settings["gpuPools"])
    assert [(p["name"], p["gpu"], p["localQueue"]) for p in pools] == [
        ("h100", "h100-80gb", "satk8s-h100"),
        ("l4", "l4", "satk8s-l4"),
    ]
    # The L4 pool's labels come from the GPU catalogue, as the compiler's gke preset has them.
    from satk8s.cluster.gpus import catalogue

    assert pools[1]["nodeLabels"] == catalogue().placement("gke", "l4").node_selector
    assert pools[0]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert settings["cpuQueue"] == "satk8s-cpu"
    assert json.loads(settings["kueuePriorityClasses"]) == {
        "cpu": "satk8s-shared",
        "evaluate": "satk8s-cells",
        "generate": "satk8s-shared",
        "judge": "satk8s-shared",
        "train": "satk8s-cells",
    }


# -- Kueue and priorities ---------------------------------------------------------------------


def test_kueue_objects_per_pool_reference_each_other(full):
    objects, _ = full
    flavors = {o["metadata"]["name"]: o for o in by_kind(objects, "ResourceFlavor")}
    queues = {o["metadata"]["name"]: o for o in by_kind(objects, "ClusterQueue")}
    local = {o["metadata"]["name"]: o for o in by_kind(objects, "LocalQueue")}

    assert (
        set(flavors)
        == set(queues)
        == {
            f"{NS}-satk8s-h100",
            f"{NS}-satk8s-l4",
            f"{NS}-satk8s-cpu",
        }
    )
    assert set(local) == {"satk8s-h100", "satk8s-l4", "satk8s-cpu"}
    for lq in local.values():
        assert lq["metadata"]["namespace"] == NS
        assert lq["spec"]["clusterQueue"] in queues
    for cq in queues.values():
        assert cq["spec"]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": NS}
        }
        assert cq["apiVersion"] == "kueue.x-k8s.io/v1beta2"
        assert cq["spec"]["cohortName"] == "ml"
        (group,) = cq["spec"]["resourceGroups"]
        gpu = [] if cq["metadata"]["name"].endswith("-cpu") else ["nvidia.com/gpu"]
        assert group["coveredResources"] == ["cpu", "memory", *gpu]
        assert {f["name"] for f in group["flavors"]} <= set(flavors)
    h100 = queues[f"{NS}-satk8s-h100"]["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
    assert {r["name"]: r["nominalQuota"] for r in h100} == {
        "cpu": "200",
        "memory": "1800Gi",
        "nvidia.com/gpu": 16,
    }
    assert flavors[f"{NS}-satk8s-h100"]["spec"]["nodeLabels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-h100-80gb"
    }
    assert flavors[f"{NS}-satk8s-h100"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert flavors[f"{NS}-satk8s-l4"]["spec"]["nodeLabels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"
    }
    assert "spec" not in flavors[f"{NS}-satk8s-cpu"]  # CPU steps: any node


def test_kueue_v1beta1_names_the_cohort_the_old_way():
    values = copy.deepcopy(FULL_VALUES)
    values["kueue"]["apiVersion"] = "kueue.x-k8s.io/v1beta1"
    objects, _ = render(values)

    for cq in by_kind(objects, "ClusterQueue"):
        assert cq["apiVersion"] == "kueue.x-k8s.io/v1beta1"
        assert cq["spec"]["cohort"] == "ml" and "cohortName" not in cq["spec"]


def test_kueue_priority_classes_only_when_created_and_no_pod_priority_classes(full, default):
    objects, _ = full

    classes = {o["metadata"]["name"]: o for o in by_kind(objects, "WorkloadPriorityClass")}
    assert classes["satk8s-shared"]["value"] > classes["satk8s-cells"]["value"]
    assert all(c["apiVersion"] == "kueue.x-k8s.io/v1beta2" for c in classes.values())
    # KFP 2.17 sets no priorityClassName on a step pod (kfp-kubernetes has no setter): a
    # Kubernetes PriorityClass would be inert, so the chart makes none.
    assert by_kind(objects, "PriorityClass") == [] == by_kind(default[0], "PriorityClass")
    assert by_kind(default[0], "WorkloadPriorityClass") == []


def test_a_pool_without_labels_on_a_cloud_with_several_node_types_is_refused():
    values = copy.deepcopy(FULL_VALUES)
    values["gpuPools"][1] = {"name": "a10g", "gpu": "a10g", "cloud": "eks", "quota": {"gpus": 1, "cpu": 8, "memory": "32Gi"}}  # fmt: skip
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.render(values, name="satk8s", namespace=NS)
    assert "gpuPools a10g: set nodeLabels; gpus.yaml names 8 node types for a10g on eks" in str(
        err.value
    )
    values["gpuPools"][1]["gpu"] = "b100"
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.render(values, name="satk8s", namespace=NS)
    assert 'gpuPools a10g: unknown gpu "b100"' in str(err.value)


def test_the_charts_gpu_catalogue_is_the_packages():
    # One definition: the chart reads the file the compiler reads, through a link.
    link = CHART / "gpus.yaml"
    assert link.is_symlink()
    assert link.resolve() == (REPO / "satk8s" / "cluster" / "gpus.yaml").resolve()


# -- NOTES --------------------------------------------------------------------------------------


def test_notes_give_the_next_steps(default, full):
    _, notes = default
    assert "store.root is empty" in notes
    assert "--set store.root=s3://<bucket>/<prefix>" in notes
    assert "kubectl -n team-a create secret generic satk8s-s3" in notes
    assert "satk8s doctor --namespace team-a" in notes
    assert "satk8s setup launcher" not in notes  # no pipeline root to merge
    assert "KFP_NAMESPACE=team-a STORE=s3://<bucket>/<prefix>" in notes
    # Which token submits, in either install; not the run account's.
    assert "create token default-editor --audience=pipelines.kubeflow.org" in notes
    assert "standalone KFP: no token" in notes
    assert "it runs as satk8s-runner" in notes

    _, notes = full
    assert "store.root is empty" not in notes
    assert "satk8s setup launcher --namespace team-a" in notes
    assert "KFP_NAMESPACE=team-a\n" in notes
    assert "keeps the S3 keys in Helm's release record" in notes  # source=create warns
    assert "helm test satk8s -n team-a" in notes
    assert "satk8s-h100  ->  16 GPUs on pool h100" in notes
    assert "create secret generic judge-key --from-file=OPENAI_API_KEY=" in notes


# -- The values schema ---------------------------------------------------------------------------


def _with(path: str, value) -> dict:
    values: dict = copy.deepcopy(FULL_VALUES)
    *parents, last = path.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (_with("store.pipelineRoot", "gs://acme/runs"), "at '/store/pipelineRoot'"),
        (_with("store.root", "s3://satk8s/store"), "at '/store/root'"),
        (_with("store.root", "s3://<bucket>/satk8s"), "at '/store/root'"),
        ({"kfpLauncher": {"create": True}}, "additional properties 'kfpLauncher' not allowed"),
        (_with("store.endpoint", "https://s3.amazonaws.com"), "at '/store/endpoint'"),
        ({"storage": {"pipelineRoot": "s3://a/b"}}, "additional properties 'storage' not allowed"),
        (_with("secrets.s3.source", "plaintext"), "value must be one of 'fromEnv', 'create'"),
        (
            _with("secrets.judgeApiKey", {"source": "create", "name": "j", "key": "K"}),
            "at '/secrets/judgeApiKey'",
        ),
        (
            _with("secrets.hubToken.external", {"remoteKey": ""}),
            "at '/secrets/hubToken/external/remoteKey'",
        ),
        (
            _with("externalSecrets.secretStoreRef", {"kind": "ClusterSecretStore", "name": ""}),
            "at '/externalSecrets/secretStoreRef/name'",
        ),
        (_with("gpuPools", []), "at '/gpuPools': minItems"),
        (
            _with(
                "gpuPools",
                [
                    {
                        "name": "H100_pool",
                        "nodeLabels": {"a": "b"},
                        "quota": {"gpus": 1, "cpu": 1, "memory": "1Gi"},
                    }
                ],
            ),
            "at '/gpuPools/0/name'",
        ),
        (
            _with("gpuPools", [{"name": "h100", "gpu": "h100-80gb", "nodeLabels": {"a": "b"}}]),
            "quota",
        ),
        (
            _with(
                "gpuPools",
                [
                    {
                        "name": "h100",
                        "nodeLabels": {"a": "b"},
                        "quota": {"gpus": 1, "cpu": 1, "memory": "1Gi"},
                    }
                ],
            ),
            "missing property 'gpu'",
        ),
        (_with("tests.image", "registry.example.com/satk8s-cpu:latest"), "at '/tests/image'"),
        (_with("serviceAccount.awsRoleArn", "satk8s-role"), "at '/serviceAccount/awsRoleArn'"),
        ({"priorityClasses": {"create": True}}, "additional properties 'priorityClasses'"),
        (
            _with("kueue.priorityClasses.classes", [{"name": "x", "value": 1, "roles": ["gpu"]}]),
            "at '/kueue/priorityClasses/classes/0/roles/0'",
        ),
    ],
    ids=[
        "gcs-root",
        "placeholder-store",
        "store-from-the-docs",
        "chart-owned-launcher",
        "endpoint-with-scheme",
        "typo-key",
        "unknown-source",
        "create-without-value",
        "external-without-key",
        "external-without-store",
        "kueue-without-pools",
        "bad-pool-name",
        "kueue-pool-without-quota",
        "pool-without-gpu-type",
        "image-by-tag",
        "bad-role-arn",
        "pod-priority-classes-are-gone",
        "unknown-role",
    ],
)
def test_schema_rejects_bad_values_with_a_clear_message(values, message):
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError) as err:
            chart.render(values, name="satk8s", namespace=NS)

    assert message in str(err.value)
    assert "schema" in str(err.value)  # Helm says it is the values schema that refused them


def test_schema_accepts_default_and_full_values():
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(chart.merge_values())
        chart.validate_schema(chart.merge_values(FULL_VALUES))


# -- Installing next to what KFP owns -----------------------------------------------------------

KFP_STANDALONE_OBJECTS = (
    {
        ("ConfigMap", name)
        for name in (
            "kfp-launcher",
            "metadata-envoy-configmap",
            "metadata-grpc-configmap",
            "ml-pipeline-ui-configmap",
            "pipeline-install-config",
            "workflow-controller-configmap",
        )
    }
    | {
        ("ServiceAccount", name)
        for name in (
            "kubeflow-pipelines-cache",
            "kubeflow-pipelines-container-builder",
            "kubeflow-pipelines-metadata-writer",
            "kubeflow-pipelines-viewer",
            "metadata-grpc-server",
            "ml-pipeline",
            "ml-pipeline-persistenceagent",
            "ml-pipeline-scheduledworkflow",
            "ml-pipeline-ui",
            "ml-pipeline-viewer-crd-service-account",
            "ml-pipeline-visualizationserver",
            "pipeline-runner",
        )
    }
    | {
        ("Role", name)
        for name in (
            "kubeflow-pipelines-cache-role",
            "kubeflow-pipelines-metadata-writer-role",
            "kubeflow-pipelines-public",
            "ml-pipeline",
            "ml-pipeline-persistenceagent-role",
            "ml-pipeline-scheduledworkflow-role",
            "ml-pipeline-ui",
            "ml-pipeline-viewer-controller-role",
            "pipeline-runner",
        )
    }
    | {
        ("RoleBinding", name)
        for name in (
            "kubeflow-pipelines-cache-binding",
            "kubeflow-pipelines-metadata-writer-binding",
            "kubeflow-pipelines-public",
            "ml-pipeline",
            "ml-pipeline-persistenceagent-binding",
            "ml-pipeline-scheduledworkflow-binding",
            "ml-pipeline-ui",
            "ml-pipeline-viewer-crd-binding",
            "pipeline-runner-binding",
        )
    }
    | {("Secret", "mysql-secret"), ("Secret", "mlpipeline-minio-artifact")}
)
"""Namespaced objects a standalone KFP 2.17 install keeps in its own namespace (`kubeflow`),
where standalone runs execute: kubeflow/pipelines@2.17.0:manifests/kustomize/base/pipeline/
(kfp-launcher-configmap.yaml, pipeline-runner-role.yaml, pipeline-runner-sa.yaml, ...),
base/installs/generic/ (pipeline-install-config.yaml, mysql-secret.yaml), base/metadata/base/,
base/cache/ and third-party/argo/base/; none carries Helm's ownership metadata."""


def helm_install_conflicts(objects: list[dict], existing: set[tuple[str, str]]) -> list[str]:
    """The errors `helm install` stops with when a rendered object already exists without
    Helm's ownership metadata: helm/helm:pkg/action/validate.go (existingResourceConflict and
    checkOwnership: an existing object is adopted only when it carries the label
    app.kubernetes.io/managed-by=Helm and the release name and namespace annotations)."""
    return [
        f'{o["kind"]} "{o["metadata"]["name"]}" in namespace "{NS}" exists and cannot be '
        "imported into the current release: invalid ownership metadata"
        for o in objects
        if (o["kind"], o["metadata"]["name"]) in existing
    ]


@pytest.mark.parametrize(
    "existing",
    [KFP_PROFILE_OBJECTS, KFP_STANDALONE_OBJECTS],
    ids=["multi-user-profile", "standalone-kubeflow"],
)
def test_default_install_succeeds_where_kfp_already_owns_kfp_launcher(default, existing):
    objects, _ = default

    assert helm_install_conflicts(objects, existing) == []


def test_trainjob_rules_only_when_enabled_and_as_kubeflow_trainer_s_edit_role():
    objects, _ = render({"rbac": {"trainJobs": {"enabled": True}}})
    role = one(objects, "Role", "satk8s-runner")
    # What the Kubeflow SDK's Kubernetes backend calls (kubeflow 0.5.0), and no more.
    assert role["rules"][-3:] == [
        {
            "apiGroups": ["trainer.kubeflow.org"],
            "resources": ["trainjobs"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        },
        {
            "apiGroups": ["trainer.kubeflow.org"],
            "resources": ["trainingruntimes"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
    ]
    assert not {o["kind"] for o in objects} & CLUSTER_SCOPED


def test_cluster_runtimes_read_is_opt_in_and_bound_to_the_run_account():
    objects, _ = render({"rbac": {"trainJobs": {"enabled": True, "clusterRuntimes": True}}})
    (role,) = by_kind(objects, "ClusterRole")
    (binding,) = by_kind(objects, "ClusterRoleBinding")
    assert role["metadata"]["name"] == f"{NS}-satk8s-trainer-runtimes"
    assert role["rules"] == [
        {
            "apiGroups": ["trainer.kubeflow.org"],
            "resources": ["clustertrainingruntimes"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "satk8s-runner", "namespace": NS}
    ]
