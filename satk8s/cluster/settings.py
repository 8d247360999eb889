"""Cluster settings: the one place satk8s learns how a namespace is set up for its runs.

The Helm chart (`helm/satk8s`) writes its values into the `satk8s-settings` ConfigMap of the
namespace it prepares; `satk8s grid compile`, `satk8s submit`, `satk8s doctor` and
`satk8s setup launcher` read that ConfigMap through the Kubernetes API (kubeconfig or in-cluster)
or a file exported from it (`satk8s settings export`, `--settings FILE`). Nothing in
`pipelines/conf/` repeats these facts.

| key               | field                | meaning                                                |
|-------------------|----------------------|--------------------------------------------------------|
| storeRoot         | store_root           | the satk8s store, s3://bucket[/prefix]; "" = none yet  |
| pipelineRoot      | pipeline_root        | KFP's root for the namespace; "" = KFP's own default   |
| s3EndpointUrl     | s3_endpoint_url      | S3 API URL; "" = AWS S3 itself                         |
| s3Region          | s3_region            | signing region                                         |
| s3AddressingStyle | s3_addressing_style  | path, virtual or auto                                  |
| serviceAccount    | service_account      | the ServiceAccount runs execute as                     |
| s3Secret          | s3_secret            | Secret with the S3 keys; "" = the pod's cloud identity |
| s3AccessKeyKey    | s3_access_key_key    | its key holding the access key id                      |
| s3SecretKeyKey    | s3_secret_key_key    | its key holding the secret access key                  |
| hubTokenSecret    | hub_token_secret     | Secret with the Hugging Face token; "" = none          |
| hubTokenKey       | hub_token_key        | its key                                                |
| judgeApiKeySecret | judge_api_key_secret | Secret with the judge endpoint's API key; "" = none    |
| judgeApiKeyKey    | judge_api_key_key    | its key                                                |
| gpuPools          | gpu_pools            | JSON list of {name, gpu, nodeLabels, tolerations,      |
|                   |                      | localQueue}                                            |
| cpuQueue          | cpu_queue            | Kueue LocalQueue of the CPU steps; "" = none           |
| kueuePriorityClasses | priority_classes  | JSON {role: Kueue WorkloadPriorityClass}               |
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from satk8s.errors import ConfigError, Satk8sError

SETTINGS_CONFIGMAP = "satk8s-settings"
"""The ConfigMap the chart writes in the namespace it prepares."""

PLACEHOLDER_ROOTS = ("s3://satk8s/store", "s3://satk8s/kfp")
"""Roots earlier satk8s versions shipped as defaults: a bucket on AWS that someone else owns."""

ADDRESSING_STYLES = ("auto", "path", "virtual")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_S3_ROOT = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[^\s]*)?$")
_ENDPOINT = re.compile(r"^https?://[^/\s:]+(:\d+)?/?$")


class ClusterSettingsError(Satk8sError):
    """The cluster settings could not be read (no kubeconfig, no ConfigMap, no access)."""


def _key(name: str, default: Any) -> Any:
    if isinstance(default, type(field())):  # a default factory
        return field(default_factory=default.default_factory, metadata={"key": name})
    return field(default=default, metadata={"key": name})


@dataclass(frozen=True)
class GpuPool:
    """One GPU node pool of the chart's `gpuPools`."""

    name: str
    """The pool's name in the chart values, e.g. `h100`."""
    node_labels: Mapping[str, str] = field(default_factory=dict)
    """Labels that select the pool's nodes."""
    local_queue: str = ""
    """The Kueue LocalQueue of the pool (chart `kueue.enabled`), else empty."""
    gpu: str = ""
    """The pool's GPU type (satk8s/cluster/gpus.yaml): GPU roles of a grid with that
    `compute.gpu` run on this pool."""
    tolerations: tuple[Mapping[str, Any], ...] = ()
    """Taints of the pool's nodes that its pods tolerate (Kubernetes Toleration objects)."""


@dataclass(frozen=True)
class ClusterSettings:
    """The `satk8s-settings` ConfigMap of one namespace, checked key by key."""

    store_root: str = _key("storeRoot", "")
    """Where step outputs live: s3://bucket[/prefix]. Empty: none configured, and every compile
    for the cluster must pass one (`store.root=…`, `make submit STORE=…`)."""
    pipeline_root: str = _key("pipelineRoot", "")
    """KFP's pipeline root for the namespace (`defaultPipelineRoot` of kfp-launcher, written by
    `satk8s setup launcher`). Empty: KFP keeps its own default."""
    s3_endpoint_url: str = _key("s3EndpointUrl", "")
    """The S3 API URL (`http://minio.kubeflow:9000`); empty for AWS S3 itself."""
    s3_region: str = _key("s3Region", "")
    """Signing region, e.g. `us-east-1`."""
    s3_addressing_style: str = _key("s3AddressingStyle", "auto")
    """`path` (MinIO, Ceph), `virtual` or `auto`."""
    service_account: str = _key("serviceAccount", "satk8s-runner")
    """The ServiceAccount pipeline runs execute as (passed at submit)."""
    s3_secret: str = _key("s3Secret", "")
    """Secret holding the S3 keys; empty: the pods' cloud identity (IRSA, workload identity)."""
    s3_access_key_key: str = _key("s3AccessKeyKey", "AWS_ACCESS_KEY_ID")
    """Key of `s3_secret` holding the access key id."""
    s3_secret_key_key: str = _key("s3SecretKeyKey", "AWS_SECRET_ACCESS_KEY")
    """Key of `s3_secret` holding the secret access key."""
    hub_token_secret: str = _key("hubTokenSecret", "")
    """Secret holding a Hugging Face token (gated models); empty: none."""
    hub_token_key: str = _key("hubTokenKey", "HF_TOKEN")
    """Key of `hub_token_secret`."""
    judge_api_key_secret: str = _key("judgeApiKeySecret", "")
    """Secret holding the API key of an OpenAI-compatible judge; empty: none."""
    judge_api_key_key: str = _key("judgeApiKeyKey", "OPENAI_API_KEY")
    """Key of `judge_api_key_secret`."""
    gpu_pools: tuple[GpuPool, ...] = _key("gpuPools", ())
    """The chart's GPU node pools: a cluster compile places each GPU role on the pool of the
    grid's GPU type (its node labels, tolerations and Kueue queue); the doctor checks them."""
    cpu_queue: str = _key("cpuQueue", "")
    """The Kueue LocalQueue the CPU steps join (chart `kueue.enabled`); empty: none."""
    priority_classes: Mapping[str, str] = _key("kueuePriorityClasses", field(default_factory=dict))
    """Compute role -> the Kueue WorkloadPriorityClass its queued pods carry."""
    source: str = field(default="cluster settings", compare=False)
    """Where these came from, for messages: `satk8s-settings in namespace X` or a file."""
    namespace: str = field(default="", compare=False)
    """The namespace they were read from ("" for a file)."""

    def __post_init__(self) -> None:
        def bad(key: str, message: str) -> ConfigError:
            return ConfigError(key, f"{message} ({self.source})")

        for key, value in (("storeRoot", self.store_root), ("pipelineRoot", self.pipeline_root)):
            if value:
                problem = root_problem(value)
                if problem:
                    raise bad(key, problem)
        if self.s3_endpoint_url and not _ENDPOINT.match(self.s3_endpoint_url):
            raise bad(
                "s3EndpointUrl",
                f"'{self.s3_endpoint_url}' is not an http(s)://host[:port] URL",
            )
        if self.s3_addressing_style not in ADDRESSING_STYLES:
            raise bad(
                "s3AddressingStyle",
                f"'{self.s3_addressing_style}'; use one of {', '.join(ADDRESSING_STYLES)}",
            )
        if self.cpu_queue and not _DNS_NAME.match(self.cpu_queue):
            raise bad("cpuQueue", f"'{self.cpu_queue}' is not a LocalQueue name")
        if not _DNS_NAME.match(self.service_account):
            raise bad("serviceAccount", f"'{self.service_account}' is not a ServiceAccount name")
        for name_key, keys in SECRET_KEYS:
            name = getattr(self, _field(name_key))
            if name and not _DNS_NAME.match(name):
                raise bad(name_key, f"'{name}' is not a Secret name")
            for key_key in keys:
                value = getattr(self, _field(key_key))
                if not _SECRET_KEY.match(value):
                    raise bad(key_key, f"'{value}' is not a Secret key (letters, digits, -._)")

    @classmethod
    def from_data(
        cls, data: Mapping[str, Any], source: str, namespace: str = ""
    ) -> ClusterSettings:
        """Settings from a ConfigMap's data (key -> text); ConfigError naming a bad key."""
        known = {f.metadata["key"]: f.name for f in fields(cls) if "key" in f.metadata}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                unknown[0],
                f"unknown key ({source}); known: {', '.join(known)}. Chart and satk8s must be "
                "the same version",
            )
        values: dict[str, Any] = {}
        for key, name in known.items():
            if key not in data or data[key] is None:
                continue
            raw = data[key]
            if key == "gpuPools":
                values[name] = _pools(raw, source)
            elif key == "kueuePriorityClasses":
                values[name] = _priority_classes(raw, source)
            elif isinstance(raw, str):
                values[name] = raw.strip()
            else:
                raise ConfigError(key, f"must be text, got {type(raw).__name__} ({source})")
        return cls(**values, source=source, namespace=namespace)

    def to_data(self) -> dict[str, str]:
        """The ConfigMap data these settings come from (the file `settings export` writes)."""
        data: dict[str, str] = {}
        for f in fields(self):
            if "key" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if f.name == "gpu_pools":
                value = json.dumps([_pool_dict(p) for p in value], sort_keys=True)
            elif f.name == "priority_classes":
                value = json.dumps(dict(value), sort_keys=True)
            data[f.metadata["key"]] = value
        return data

    def export_yaml(self) -> str:
        """A settings file: the ConfigMap's data as YAML, readable by `--settings FILE`."""
        import yaml

        header = (
            f"# satk8s cluster settings, exported from {self.source}.\n"
            "# Pass with --settings FILE to `satk8s grid compile` / `satk8s submit`; the keys are\n"
            "# those of the chart's satk8s-settings ConfigMap (satk8s/cluster/settings.py).\n"
        )
        return header + yaml.safe_dump(self.to_data(), sort_keys=False, width=100)

    @property
    def helm_namespace(self) -> str:
        """The namespace to name in a `helm upgrade` fix."""
        return self.namespace or "<namespace>"


POOL_KEYS = ("name", "gpu", "nodeLabels", "tolerations", "localQueue")
"""Keys of one gpuPools entry as the chart writes it."""

SECRET_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("s3Secret", ("s3AccessKeyKey", "s3SecretKeyKey")),
    ("hubTokenSecret", ("hubTokenKey",)),
    ("judgeApiKeySecret", ("judgeApiKeyKey",)),
)
"""(key of a Secret's name, keys of the Secret keys it must hold)."""


def _field(key: str) -> str:
    return next(f.name for f in fields(ClusterSettings) if f.metadata.get("key") == key)


def _pool_dict(pool: GpuPool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": pool.name, "nodeLabels": dict(pool.node_labels)}
    if pool.gpu:
        data["gpu"] = pool.gpu
    if pool.tolerations:
        data["tolerations"] = [dict(t) for t in pool.tolerations]
    if pool.local_queue:
        data["localQueue"] = pool.local_queue
    return data


def _priority_classes(raw: Any, source: str) -> dict[str, str]:
    """kueuePriorityClasses as the chart writes it (JSON text) or a mapping in a settings file."""
    from satk8s.grid.plan import ROLES

    if isinstance(raw, str):
        try:
            raw = json.loads(raw or "{}")
        except ValueError as err:
            raise ConfigError("kueuePriorityClasses", f"not valid JSON: {err} ({source})") from None
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and _DNS_NAME.match(v) for k, v in raw.items()
    ):
        raise ConfigError(
            "kueuePriorityClasses", f"must map a compute role to a priority class name ({source})"
        )
    if unknown := sorted(set(raw) - set(ROLES)):
        raise ConfigError(
            "kueuePriorityClasses", f"unknown roles {unknown}; known: {', '.join(ROLES)} ({source})"
        )
    return dict(sorted(raw.items()))


def _pools(raw: Any, source: str) -> tuple[GpuPool, ...]:
    """gpuPools as the chart writes it (JSON text) or as a YAML list in a settings file."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw or "[]")
        except ValueError as err:
            raise ConfigError("gpuPools", f"not valid JSON: {err} ({source})") from None
    if not isinstance(raw, list):
        raise ConfigError("gpuPools", f"must be a list of pools ({source})")
    pools = []
    for i, entry in enumerate(raw):
        where = f"gpuPools[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(
                where, f"must be {{name, gpu, nodeLabels, tolerations, localQueue}} ({source})"
            )
        if unknown := sorted(set(entry) - set(POOL_KEYS)):
            raise ConfigError(where, f"unknown keys {unknown} ({source})")
        labels = entry.get("nodeLabels") or {}
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ConfigError(f"{where}.nodeLabels", f"must map label to text ({source})")
        gpu = str(entry.get("gpu") or "")
        if gpu:
            from satk8s.cluster.gpus import catalogue

            if gpu not in catalogue().gpus:
                known = ", ".join(catalogue().gpus)
                raise ConfigError(
                    f"{where}.gpu", f"unknown GPU type '{gpu}' ({source}); known: {known}"
                )
        tolerations = entry.get("tolerations", [])
        if not isinstance(tolerations, list) or not all(
            isinstance(t, Mapping) for t in tolerations
        ):
            raise ConfigError(f"{where}.tolerations", f"must be a list of tolerations ({source})")
        pools.append(
            GpuPool(
                entry["name"],
                dict(labels),
                str(entry.get("localQueue") or ""),
                gpu,
                tuple(dict(t) for t in tolerations),
            )
        )
    return tuple(pools)


# ----------------------------------------------------------------------------- store roots


def root_problem(root: str) -> str | None:
    """Why `root` cannot be a cluster store or pipeline root, or None when it can."""
    stripped = root.rstrip("/")
    if stripped in PLACEHOLDER_ROOTS or any(mark in root for mark in ("<", ">", "...", "…")):
        return f"'{root}' is a placeholder, not your bucket"
    if not _S3_ROOT.match(root):
        return f"'{root}' is not s3://bucket[/prefix] (bucket: 3-63 of a-z, 0-9, '.', '-')"
    return None


def cluster_store(root: str, settings: ClusterSettings) -> str:
    """The store root a pipeline for this cluster writes to: `root` as the grid resolved it
    (the settings' storeRoot unless an override set another). Raises ConfigError, saying how to
    set one, when there is none or it is not an S3 location the pods can reach."""
    ns = settings.helm_namespace
    how = (
        f"set it once for the namespace: helm upgrade satk8s helm/satk8s -n {ns} "
        "--reuse-values --set store.root=s3://<bucket>/<prefix>; or for one pipeline: "
        "store.root=s3://<bucket>/<prefix> (make submit GRID=… STORE=s3://<bucket>/<prefix>)"
    )
    is_local = (bool(root) and "://" not in root) or root.startswith("file://")
    local = f"'{root}' is a local path the cluster's pods cannot reach" if is_local else ""
    if local and settings.store_root:  # an override chose it over the settings' store
        raise ConfigError("store.root", f"{local}; a cluster store is s3://bucket[/prefix]")
    if not root or local:
        grid_store = f" (the grid's own store {local})" if local else ""
        raise ConfigError(
            "store.root",
            f"no store for the cluster: {settings.source} has no storeRoot{grid_store}; {how}",
        )
    if problem := root_problem(root):
        raise ConfigError("store.root", f"{problem}; {how}")
    return root.rstrip("/")


# ----------------------------------------------------------------------------- loading


def read_settings_file(path: str | Path) -> ClusterSettings:
    """Settings from a file: the YAML `satk8s settings export` writes (the ConfigMap's data),
    or a whole ConfigMap manifest (`kubectl get configmap satk8s-settings -o yaml`)."""
    import yaml

    file = Path(path)
    source = f"settings file {file}"
    if not file.is_file():
        raise ClusterSettingsError(
            f"{file}: no such settings file; write one with `satk8s settings export -n "
            "<namespace> -o FILE`"
        )
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(str(file), f"not valid YAML: {err}") from None
    if isinstance(data, Mapping) and data.get("kind") == "ConfigMap":
        namespace = str((data.get("metadata") or {}).get("namespace") or "")
        data = data.get("data") or {}
    else:
        namespace = ""
    if not isinstance(data, Mapping):
        raise ConfigError(str(file), "must be a mapping of satk8s-settings keys")
    return ClusterSettings.from_data(data, source, namespace)


def read_settings_from_cluster(
    namespace: str | None = None,
    kubeconfig: str | Path | None = None,
    context: str | None = None,
    in_cluster: bool | None = None,
) -> ClusterSettings:
    """The `satk8s-settings` ConfigMap of `namespace` (default: the kubeconfig context's). The
    API is reached through the kubeconfig, or from inside a pod without one, through the pod's
    ServiceAccount (`in_cluster=None`)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException

    from satk8s.cluster.kube import TIMEOUT_S, connect

    instead = "or pass --settings FILE (written by `satk8s settings export`)"
    try:
        api, default_namespace = connect(kubeconfig, context, in_cluster)
    except (ConfigException, OSError) as err:
        raise ClusterSettingsError(
            f"cannot read the cluster settings: no usable Kubernetes configuration ({err}); "
            f"set KUBECONFIG or pass --kubeconfig/--context, {instead}"
        ) from None
    ns = namespace or default_namespace
    where = f"ConfigMap {SETTINGS_CONFIGMAP} in namespace {ns}"
    try:
        found = client.CoreV1Api(api).read_namespaced_config_map(
            SETTINGS_CONFIGMAP, ns, _request_timeout=TIMEOUT_S
        )
    except ApiException as err:
        if err.status == 404:
            raise ClusterSettingsError(
                f"no {where}: install the chart there (helm upgrade --install satk8s "
                f"helm/satk8s -n {ns} …), check the namespace (--namespace / KFP_NAMESPACE), "
                f"{instead}"
            ) from None
        if err.status in (401, 403):
            raise ClusterSettingsError(
                f"not allowed to read {where} (HTTP {err.status}): ask for get on configmaps "
                f"in {ns}, {instead}"
            ) from None
        raise ClusterSettingsError(f"cannot read {where}: HTTP {err.status} {err.reason}") from None
    except Exception as err:  # unreachable API server, TLS, timeouts
        raise ClusterSettingsError(
            f"cannot read {where} from {api.configuration.host}: {type(err).__name__}; {instead}"
        ) from None
    return ClusterSettings.from_data(
        dict(found.data or {}), f"{SETTINGS_CONFIGMAP} in namespace {ns}", ns
    )


def load_settings(
    path: str | Path | None = None,
    namespace: str | None = None,
    kubeconfig: str | Path | None = None,
    context: str | None = None,
) -> ClusterSettings:
    """Settings from `path` when given, else from the cluster's `namespace`."""
    if path is not None:
        return read_settings_file(path)
    return read_settings_from_cluster(namespace, kubeconfig, context)


__all__ = [
    "PLACEHOLDER_ROOTS",
    "SECRET_KEYS",
    "SETTINGS_CONFIGMAP",
    "ClusterSettings",
    "ClusterSettingsError",
    "GpuPool",
    "cluster_store",
    "load_settings",
    "read_settings_file",
    "read_settings_from_cluster",
    "root_problem",
]
