"""A loopback server that plays the Kubernetes API paths satk8s reads and writes, KFP's healthz
behind the API server's service proxy, and a path-style S3 endpoint. Registered in conftest.py.

- `cluster` (function): a `FakeCluster` serving one healthy satk8s namespace (`NS`).
- `kubeconfig(tmp_path, port)`: a kubeconfig file whose `fake` context points at it.

What KFP 2.17 puts in a namespace is modelled from its own source, cited where it is set up
(`kfp_profile_namespace`, `kfp_standalone_namespace`). Kubernetes and S3 behaviour follows the
API documentation: 404 `Status` objects, server-side apply of ConfigMap data, S3 error XML.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import yaml

NS = "team-a"
BUCKET = "satk8s-runs"
"""The bucket of KFP's pipeline root in the healthy namespace."""
STORE_BUCKET = "acme-satk8s-store"
"""The bucket of the satk8s store (`storeRoot`) in the healthy namespace."""
ACCESS_KEY, SECRET_KEY = "AKIAEXAMPLEEXAMPLE01", "example-secret-access-key"

VERSION = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.2",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2025-11-11T00:00:00Z",
    "goVersion": "go1.24.9",
    "compiler": "gc",
    "platform": "linux/amd64",
}

KFP_HEALTH = {
    "commit_sha": "abc123",
    "tag_name": "2.17.0",
    "multi_user": True,
    "pipeline_store": "database",
}
"""KFP's healthz body: kubeflow/pipelines@2.17.0:backend/src/apiserver/main.go
(healthzResponse: commit_sha, tag_name, multi_user, pipeline_store)."""


KFP_PROFILE_OBJECTS = {
    ("ConfigMap", "kfp-launcher"),
    ("ConfigMap", "metadata-grpc-configmap"),
    ("ConfigMap", "artifact-repositories"),
    ("Secret", "mlpipeline-minio-artifact"),
    ("Deployment", "ml-pipeline-ui-artifact"),
    ("Service", "ml-pipeline-ui-artifact"),
    ("ServiceAccount", "default-editor"),
}
"""What a multi-user profile namespace holds before satk8s is installed there, none of it with
Helm's ownership metadata: KFP's pipelines profile controller creates the ConfigMaps, the Secret
and (with ARTIFACTS_PROXY_ENABLED) the artifact proxy's Deployment and Service
(kubeflow/pipelines@2.17.0:manifests/kustomize/base/installs/multi-user/
pipelines-profile-controller/sync.py, `desired_resources`); `default-editor` is the profile's
account KFP runs pipelines as by default
(kubeflow/pipelines@2.17.0:manifests/kustomize/base/installs/multi-user/api-service/params.env)."""


def node(
    name: str,
    pool: str,
    gpus: int,
    *,
    allocatable: int | None = None,
    ready: bool = True,
    product: str = "NVIDIA-H100-80GB-HBM3",
    cpu: str | None = None,
    memory: str | None = None,
    ephemeral: str | None = None,
    driver: str | None = "580",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
):
    """A Node object as the API server returns it (Kubernetes API reference, Node v1: metadata
    labels, spec.taints, status.capacity/allocatable/conditions). A GPU node carries GPU feature
    discovery's product and driver labels (NVIDIA/k8s-device-plugin internal/lm/resource.go,
    internal/lm/nvml.go newVersionLabeler) and the nvidia.com/gpu:NoSchedule taint GKE puts on
    GPU nodes (https://cloud.google.com/kubernetes-engine/docs/how-to/gpus)."""
    alloc = gpus if allocatable is None else allocatable
    node_labels = {"cloud.google.com/gke-nodepool": pool}
    if gpus:
        node_labels["nvidia.com/gpu.product"] = product
        if driver is not None:
            node_labels["nvidia.com/cuda.driver-version.major"] = driver
            node_labels["nvidia.com/cuda.driver.major"] = driver
    node_labels.update(labels or {})
    if gpus:
        capacity = {"cpu": "96", "nvidia.com/gpu": str(gpus)}
        allocated = {
            "cpu": cpu or "95",
            "memory": memory or "1800Gi",
            "ephemeral-storage": ephemeral or "400Gi",
            "nvidia.com/gpu": str(alloc),
        }
        node_taints = (
            [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
            if taints is None
            else taints
        )
    else:
        capacity = {"cpu": "8"}
        allocated = {
            "cpu": cpu or "7",
            "memory": memory or "28Gi",
            "ephemeral-storage": ephemeral or "80Gi",
        }
        node_taints = taints or []
    return {
        "metadata": {"name": name, "labels": node_labels},
        "spec": {"taints": node_taints} if node_taints else {},
        "status": {
            "capacity": capacity,
            "allocatable": allocated,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def settings_data(**changes: str) -> dict[str, str]:
    """The satk8s-settings data the chart writes for a healthy namespace (every key)."""
    data = {
        "storeRoot": f"s3://{STORE_BUCKET}/satk8s",
        "pipelineRoot": f"s3://{BUCKET}/kfp",
        "s3EndpointUrl": "",
        "s3Region": "us-east-1",
        "s3AddressingStyle": "path",
        "serviceAccount": "satk8s-runner",
        "s3Secret": "satk8s-s3",
        "s3AccessKeyKey": "AWS_ACCESS_KEY_ID",
        "s3SecretKeyKey": "AWS_SECRET_ACCESS_KEY",
        "hubTokenSecret": "satk8s-hub-token",
        "hubTokenKey": "HF_TOKEN",
        "judgeApiKeySecret": "",
        "judgeApiKeyKey": "OPENAI_API_KEY",
        "gpuPools": json.dumps(
            sort_keys=True,
            obj=[
                {
                    "name": "h100",
                    "gpu": "h100-80gb",
                    "nodeLabels": {"cloud.google.com/gke-nodepool": "h100"},
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                }
            ],
        ),
        "cpuQueue": "",
        "kueuePriorityClasses": "{}",
    }
    data.update(changes)
    return data


class FakeCluster:
    """State a test can read or break: nodes, namespaced objects, KFP health, S3 behaviour."""

    def __init__(self) -> None:
        self.port = 0
        self.nodes = [
            node("cpu-1", "default-pool", 0),
            node("h100-1", "h100", 8),
            node("h100-2", "h100", 8),
        ]
        self.nodes_status = 200
        self.configmaps: dict[str, dict[str, str]] = {}
        self.configmap_meta: dict[str, dict[str, Any]] = {}
        """ConfigMap name -> metadata beyond name/namespace (labels, annotations, managedFields)."""
        self.secrets: dict[str, dict[str, str]] = {
            "satk8s-s3": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
            "satk8s-hub-token": {"HF_TOKEN": "hf_example"},
        }
        self.service_accounts: dict[str, dict[str, Any]] = {
            "satk8s-runner": {
                "annotations": {},
                "imagePullSecrets": [],
            }
        }
        self.forbidden: set[tuple[str, str]] = set()
        """(kind, name) pairs the caller may not read: answered 403 like RBAC would."""
        self.kfp_status = 200
        self.kfp_body = json.dumps(KFP_HEALTH)
        self.s3_put: tuple[int, str] | None = None  # (HTTP status, S3 error code) to fail PUTs
        self.s3_get_corrupt = False
        """GETs answer other bytes than were written (a store that does not read back)."""
        self.buckets = {BUCKET, STORE_BUCKET}
        self.s3_objects: dict[str, bytes] = {}
        """"bucket/key" -> bytes."""
        self.s3_keys_seen: list[str] = []
        self.s3_auth_seen: list[str] = []
        """Authorization headers of S3 requests (which access key signed them)."""
        self.requests: list[dict[str, Any]] = []
        """Every request: method, path, query, content type, body (parsed JSON when it is)."""
        self.trainer_installed = True
        """Kubeflow Trainer v2's API group is served (its CRDs are installed)."""
        self.cluster_runtimes: dict[str, dict[str, Any]] = {
            "torch-distributed": TORCH_DISTRIBUTED_RUNTIME
        }
        self.trainjobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.pod_logs: dict[str, str] = {}
        self.on_trainjob: Any = None
        """The controller's part: called with (cluster, trainjob) after a TrainJob is created;
        `run_trainjob_nodes` by default."""

    # -- namespace contents ---------------------------------------------------------------------

    def healthy_configmaps(self) -> None:
        """kfp-launcher as `satk8s setup launcher` leaves it, and the chart's satk8s-settings."""
        providers = {
            "s3": {
                "default": {
                    "endpoint": f"127.0.0.1:{self.port}",
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
        self.configmaps = {
            "kfp-launcher": {
                "defaultPipelineRoot": f"s3://{BUCKET}/kfp",
                "providers": yaml.safe_dump(providers),
            },
            "satk8s-settings": settings_data(s3EndpointUrl=f"http://127.0.0.1:{self.port}"),
        }

    def kfp_profile_namespace(self) -> None:
        """What KFP's pipelines profile controller creates in a multi-user profile namespace,
        before satk8s is installed there: kubeflow/pipelines@2.17.0:manifests/kustomize/base/
        installs/multi-user/pipelines-profile-controller/sync.py (`desired_resources`: the
        ConfigMaps kfp-launcher with a minio:// defaultPipelineRoot and clusterDomain,
        metadata-grpc-configmap, artifact-repositories; the Secret mlpipeline-minio-artifact).
        None of them carries Helm's ownership metadata."""
        self.configmaps = {
            "kfp-launcher": {
                "defaultPipelineRoot": f"minio://mlpipeline/private-artifacts/{NS}/v2/artifacts",
                "clusterDomain": ".svc.cluster.local",
            },
            "metadata-grpc-configmap": {
                "METADATA_GRPC_SERVICE_HOST": "metadata-grpc-service.kubeflow",
                "METADATA_GRPC_SERVICE_PORT": "8080",
            },
            "artifact-repositories": {"default-namespaced": "{}"},
        }
        self.configmap_meta = {
            name: {"managedFields": [{"manager": "metacontroller", "operation": "Update"}]}
            for name in self.configmaps
        }
        self.secrets = {"mlpipeline-minio-artifact": {"accesskey": "ak", "secretkey": "sk"}}
        self.service_accounts = {}

    # -- request handling -----------------------------------------------------------------------

    def configmap_object(self, name: str) -> dict[str, Any]:
        meta = {"name": name, "namespace": NS, **self.configmap_meta.get(name, {})}
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": self.configmaps[name],
        }

    def apply_configmap(self, name: str, patch: dict[str, Any], manager: str, force: bool):
        """Server-side apply of a ConfigMap's data (Kubernetes documentation, "Server-Side
        Apply": the applied keys become the manager's, keys it does not send are left to their
        owners, and a key another manager owns is a 409 conflict unless force is set)."""
        data = dict((patch.get("data") or {}).items())
        current = self.configmaps.setdefault(name, {})
        meta = self.configmap_meta.setdefault(name, {})
        owners = meta.setdefault("owners", {})
        first = (meta.get("managedFields") or [{"manager": "kubectl-client-side-apply"}])[0]
        conflicts = sorted(
            (owners.get(k, first["manager"]), k)
            for k, v in data.items()
            if k in current and current[k] != v and owners.get(k, first["manager"]) != manager
        )
        if conflicts and not force:
            fields = ", ".join(f'conflict with "{who}": .data.{k}' for who, k in conflicts)
            message = f"Apply failed with {len(conflicts)} conflict(s): {fields}"
            return 409, _status(409, "Conflict", message)
        current.update(data)
        for key in data:
            owners[key] = manager
        return 200, self.configmap_object(name)


TRAINER = "/apis/trainer.kubeflow.org/v1alpha1"
TORCH_DISTRIBUTED_RUNTIME: dict[str, Any] = {
    "apiVersion": "trainer.kubeflow.org/v1alpha1",
    "kind": "ClusterTrainingRuntime",
    "metadata": {
        "name": "torch-distributed",
        "labels": {"trainer.kubeflow.org/framework": "torch"},
        "creationTimestamp": "2026-01-01T00:00:00Z",
    },
    "spec": {
        "mlPolicy": {"numNodes": 1, "torch": {}},
        "template": {
            "spec": {
                "replicatedJobs": [
                    {
                        "name": "node",
                        "template": {
                            "metadata": {
                                "labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
                            },
                            "spec": {
                                "template": {
                                    "spec": {
                                        "containers": [
                                            {
                                                "name": "node",
                                                "image": "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime",
                                            }
                                        ]
                                    }
                                }
                            },
                        },
                    }
                ]
            }
        },
    },
}
"""The runtime Kubeflow Trainer v2.3.0 installs: kubeflow/trainer@v2.3.0
manifests/base/runtimes/torch_distributed.yaml (the framework label the SDK requires, one
`node` replicated job whose container `node` runs torchrun)."""


def run_trainjob_nodes(cluster: FakeCluster, trainjob: dict[str, Any], ok: bool = True) -> None:
    """What Kubeflow Trainer and JobSet leave behind for a TrainJob whose nodes ran: one pod per
    node, labelled as the SDK selects them (kubeflow 0.5.0 kubeflow/trainer/constants/
    constants.py `POD_LABEL_SELECTOR`: jobset.sigs.k8s.io/jobset-name = the TrainJob's name,
    jobset.sigs.k8s.io/replicatedjob-name = node, batch.kubernetes.io/job-completion-index),
    with its `node` container's log, and the TrainJob's `Complete` (or `Failed`) condition
    (kubeflow/trainer@v2.3.0 pkg/apis/trainer/v1alpha1/trainjob_types.go, TrainJobComplete /
    TrainJobFailed)."""
    name = trainjob["metadata"]["name"]
    nodes = int((trainjob["spec"].get("trainer") or {}).get("numNodes") or 1)
    for index in range(nodes):
        pod = f"{name}-node-{index}-0-x7k2p"
        cluster.pods[pod] = {
            "metadata": {
                "name": pod,
                "namespace": NS,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {
                    "jobset.sigs.k8s.io/jobset-name": name,
                    "jobset.sigs.k8s.io/replicatedjob-name": "node",
                    "batch.kubernetes.io/job-completion-index": str(index),
                },
            },
            "spec": {"containers": [{"name": "node", "image": "step-image"}]},
            "status": {"phase": "Succeeded" if ok else "Failed"},
        }
        cluster.pod_logs[pod] = f"node {index} of {nodes}: training\nnode {index}: done\n"
    condition = {
        "type": "Complete" if ok else "Failed",
        "status": "True",
        "reason": "JobSetCompleted" if ok else "JobSetFailed",
        "message": "jobset completed" if ok else "jobset failed",
        "lastTransitionTime": "2026-01-01T00:01:00Z",
    }
    trainjob["status"] = {"conditions": [condition]}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 answers boto3's "Expect: 100-continue" at once instead of after its 1 s wait.
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: object, content_type: str = "application/json"):
            if isinstance(body, bytes):
                data = body
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _s3_error(self, status: int, code: str) -> None:
            xml = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>"
            self._send(status, xml.encode(), "application/xml")

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _record(self, method: str, body: bytes = b"") -> tuple[str, list[str]]:
            parsed = urlparse(self.path)
            path = unquote(parsed.path).rstrip("/")
            try:
                payload: Any = json.loads(body) if body else None
            except ValueError:
                payload = None
            cluster.requests.append(
                {
                    "method": method,
                    "path": path,
                    "query": parse_qs(parsed.query),
                    "content_type": self.headers.get("Content-Type", ""),
                    "body": payload,
                }
            )
            return path, path.strip("/").split("/")

        def _s3_bucket(self, parts: list[str]) -> str | None:
            return (
                parts[0]
                if parts and parts[0] in cluster.buckets | {"someone-elses-bucket"}
                else None
            )

        def do_GET(self) -> None:
            path, parts = self._record("GET")
            if (bucket := self._s3_bucket(parts)) is not None:
                cluster.s3_auth_seen.append(self.headers.get("Authorization", ""))
                key = "/".join(parts[1:])
                if f"{bucket}/{key}" not in cluster.s3_objects:
                    return self._s3_error(404, "NoSuchKey")
                data = cluster.s3_objects[f"{bucket}/{key}"]
                return self._send(
                    200, b"x" + data if cluster.s3_get_corrupt else data, "text/plain"
                )
            if path == "/version":
                return self._send(200, VERSION)
            if path.startswith(TRAINER) or path.startswith(f"/api/v1/namespaces/{NS}/pods"):
                return self._trainer_get(path)
            if path == "/api/v1/namespaces/kubeflow-system/configmaps/kubeflow-trainer-public":
                # Read by the SDK's KubernetesBackend.verify_backend (kubeflow 0.5.0), public
                # to every authenticated user (kubeflow/trainer@v2.3.0 charts/kubeflow-trainer/
                # templates/rbac/public_configmap_role.yaml).
                meta = {"name": "kubeflow-trainer-public", "namespace": "kubeflow-system"}
                data = {"kubeflow_trainer_version": "v2.3.0"}
                return self._send(
                    200, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
                )
            if path == "/api/v1/nodes":
                if cluster.nodes_status != 200:
                    return self._send(
                        cluster.nodes_status,
                        _status(
                            cluster.nodes_status,
                            "Forbidden",
                            'nodes is forbidden: User "alice" cannot list resource "nodes"',
                        ),
                    )
                body = {
                    "kind": "NodeList",
                    "apiVersion": "v1",
                    "metadata": {},
                    "items": cluster.nodes,
                }
                return self._send(200, body)
            if path == "/apis/v2beta1/healthz" or path.endswith(
                "/services/ml-pipeline:8888/proxy/apis/v2beta1/healthz"
            ):
                if cluster.kfp_status != 200 and "/proxy/" in path:
                    return self._send(
                        404, _status(404, "NotFound", 'services "ml-pipeline" not found')
                    )
                return self._send(cluster.kfp_status, cluster.kfp_body)
            if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[3] == NS:
                kind, name = parts[4], parts[5]
                if (kind, name) in cluster.forbidden:
                    message = f'{kind} "{name}" is forbidden: User "alice" cannot get resource'
                    return self._send(403, _status(403, "Forbidden", message))
                if kind == "configmaps" and name in cluster.configmaps:
                    return self._send(200, cluster.configmap_object(name))
                if kind == "secrets" and name in cluster.secrets:
                    data = {k: _b64(v) for k, v in cluster.secrets[name].items()}
                    meta = {"name": name, "namespace": NS}
                    body = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": data}
                    return self._send(200, {**body, "type": "Opaque"})
                if kind == "serviceaccounts" and name in cluster.service_accounts:
                    account = cluster.service_accounts[name]
                    meta = {"name": name, "namespace": NS, "annotations": account["annotations"]}
                    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
                    pulls = [{"name": n} for n in account["imagePullSecrets"]]
                    return self._send(200, {**body, "imagePullSecrets": pulls})
                return self._send(404, _status(404, "NotFound", f'{kind} "{name}" not found'))
            return self._send(404, _status(404, "NotFound", f'path "{path}" not found'))

        def _trainer_get(self, path: str) -> None:
            """Kubeflow Trainer's API as kube-apiserver serves its CRDs, and the pods its
            JobSets run."""
            if not cluster.trainer_installed and path.startswith(TRAINER):
                return self._send(
                    404,
                    _status(404, "NotFound", "the server could not find the requested resource"),
                )
            rest = path[len(TRAINER) :].strip("/").split("/") if path.startswith(TRAINER) else []
            if path == TRAINER:
                resources = [
                    {
                        "name": plural,
                        "namespaced": plural != "clustertrainingruntimes",
                        "kind": kind,
                    }
                    for plural, kind in (
                        ("trainjobs", "TrainJob"),
                        ("trainingruntimes", "TrainingRuntime"),
                        ("clustertrainingruntimes", "ClusterTrainingRuntime"),
                    )
                ]
                body = {
                    "kind": "APIResourceList",
                    "groupVersion": "trainer.kubeflow.org/v1alpha1",
                    "resources": resources,
                }
                return self._send(200, body)
            if rest[:1] == ["clustertrainingruntimes"]:
                if len(rest) == 1:
                    items = list(cluster.cluster_runtimes.values())
                    return self._send(
                        200,
                        {
                            "apiVersion": "trainer.kubeflow.org/v1alpha1",
                            "kind": "ClusterTrainingRuntimeList",
                            "metadata": {},
                            "items": items,
                        },
                    )
                if rest[1] in cluster.cluster_runtimes:
                    return self._send(200, cluster.cluster_runtimes[rest[1]])
                message = f'clustertrainingruntimes.trainer.kubeflow.org "{rest[1]}" not found'
                return self._send(404, _status(404, "NotFound", message))
            if rest[:3] == ["namespaces", NS, "trainingruntimes"]:
                if len(rest) == 3:
                    return self._send(
                        200,
                        {
                            "apiVersion": "trainer.kubeflow.org/v1alpha1",
                            "kind": "TrainingRuntimeList",
                            "metadata": {},
                            "items": [],
                        },
                    )
                message = f'trainingruntimes.trainer.kubeflow.org "{rest[3]}" not found'
                return self._send(404, _status(404, "NotFound", message))
            if rest[:3] == ["namespaces", NS, "trainjobs"]:
                if len(rest) == 3:
                    items = list(cluster.trainjobs.values())
                    return self._send(
                        200,
                        {
                            "apiVersion": "trainer.kubeflow.org/v1alpha1",
                            "kind": "TrainJobList",
                            "metadata": {},
                            "items": items,
                        },
                    )
                if rest[3] in cluster.trainjobs:
                    return self._send(200, cluster.trainjobs[rest[3]])
                message = f'trainjobs.trainer.kubeflow.org "{rest[3]}" not found'
                return self._send(404, _status(404, "NotFound", message))
            parts = path.strip("/").split("/")
            if len(parts) == 5:  # /api/v1/namespaces/NS/pods?labelSelector=
                query = parse_qs(urlparse(self.path).query)
                selector = (query.get("labelSelector") or [""])[0]
                wanted = selector.split(",")[0].partition("=")[2]
                items = [
                    p
                    for p in cluster.pods.values()
                    if p["metadata"]["labels"]["jobset.sigs.k8s.io/jobset-name"] == wanted
                ]
                return self._send(
                    200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
                )
            if len(parts) == 7 and parts[6] == "log" and parts[5] in cluster.pod_logs:
                return self._send(200, cluster.pod_logs[parts[5]], "text/plain")
            return self._send(404, _status(404, "NotFound", f'path "{path}" not found'))

        def do_POST(self) -> None:
            body = self._body()
            path, _ = self._record("POST", body)
            if path != f"{TRAINER}/namespaces/{NS}/trainjobs":
                return self._send(404, _status(404, "NotFound", f'path "{path}" not found'))
            trainjob = json.loads(body)
            name = trainjob["metadata"]["name"]
            if name in cluster.trainjobs:
                message = f'trainjobs.trainer.kubeflow.org "{name}" already exists'
                return self._send(409, _status(409, "AlreadyExists", message))
            trainjob["metadata"].update(
                namespace=NS,
                uid=f"uid-{len(cluster.trainjobs)}",
                resourceVersion="1",
                creationTimestamp="2026-01-01T00:00:00Z",
            )
            cluster.trainjobs[name] = trainjob
            (cluster.on_trainjob or run_trainjob_nodes)(cluster, trainjob)
            return self._send(201, trainjob)

        def do_PATCH(self) -> None:
            body = self._body()
            path, parts = self._record("PATCH", body)
            if len(parts) == 6 and parts[:5] == ["api", "v1", "namespaces", NS, "configmaps"]:
                if self.headers.get("Content-Type") != "application/apply-patch+yaml":
                    return self._send(415, _status(415, "UnsupportedMediaType", "apply only"))
                query = parse_qs(urlparse(self.path).query)
                manager = (query.get("fieldManager") or [""])[0]
                if not manager:
                    message = "fieldManager is required for apply requests"
                    return self._send(422, _status(422, "Invalid", message))
                force = (query.get("force") or ["false"])[0] == "true"
                status, answer = cluster.apply_configmap(
                    parts[5], yaml.safe_load(body), manager, force
                )
                return self._send(status, answer)
            return self._send(404, _status(404, "NotFound", f'path "{path}" not found'))

        def do_PUT(self) -> None:  # S3 PutObject, path style: /bucket/key
            body = self._body()
            _, parts = self._record("PUT")
            bucket, key = parts[0], "/".join(parts[1:])
            cluster.s3_keys_seen.append(key)
            cluster.s3_auth_seen.append(self.headers.get("Authorization", ""))
            if cluster.s3_put is not None:
                return self._s3_error(*cluster.s3_put)
            if bucket not in cluster.buckets:
                return self._s3_error(404, "NoSuchBucket")
            cluster.s3_objects[f"{bucket}/{key}"] = body
            self.send_response(200)
            self.send_header("ETag", '"0"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_DELETE(self) -> None:
            path, parts = self._record("DELETE")
            if path.startswith(f"{TRAINER}/namespaces/{NS}/trainjobs/"):
                name = parts[-1]
                if cluster.trainjobs.pop(name, None) is None:
                    message = f'trainjobs.trainer.kubeflow.org "{name}" not found'
                    return self._send(404, _status(404, "NotFound", message))
                for pod in [p for p in cluster.pods if p.startswith(f"{name}-")]:
                    del cluster.pods[pod]
                return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
            cluster.s3_objects.pop("/".join(parts), None)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCluster]:
    # The S3 client must use the Secret's keys or these, never a developer's real profile.
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "KFP_HOST", "KFP_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    fake = FakeCluster()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.port = server.server_address[1]
    fake.healthy_configmaps()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def kubeconfig(tmp_path: Path, port: int, namespace: str = NS) -> Path:
    """A kubeconfig with two contexts: `other` (current, no namespace) and `fake` (namespace
    `namespace`), both reaching the loopback server."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "alice", "user": {"token": "t0k3n"}}],
                "contexts": [
                    {"name": "other", "context": {"cluster": "fake", "user": "alice"}},
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "alice", "namespace": namespace},
                    },
                ],
                "current-context": "other",
            }
        )
    )
    return path
