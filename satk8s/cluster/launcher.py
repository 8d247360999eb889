"""KFP's `kfp-launcher` ConfigMap: what KFP reads from it, and satk8s's keys merged into it.

KFP 2.17's driver and launcher read, per run namespace (kubeflow/pipelines@2.17.0:
backend/src/v2/config/env.go):
- `defaultPipelineRoot`: where runs keep their artifacts; empty or absent means
  `minio://mlpipeline/v2/artifacts`;
- `providers`: YAML with per-scheme credentials; for `s3://` roots (backend/src/v2/config/s3.go)
      s3:
        default:
          endpoint: s3.amazonaws.com       # host[:port], or a URL
          region: us-east-1
          disableSSL: false                # optional, default false
          forcePathStyle: true             # optional, default true
          credentials: {fromEnv: true}     # or {fromEnv: false, secretRef: {secretName,
                                           #      accessKeyKey, secretKeyKey}}
  With no s3 section the launcher takes S3 credentials from the pod's environment.

KFP owns the ConfigMap: the multi-user profile controller creates it in every profile namespace
(kubeflow/pipelines@2.17.0:manifests/kustomize/base/installs/multi-user/
pipelines-profile-controller/sync.py, with a `minio://…/private-artifacts/<ns>/v2/artifacts`
root) and never rewrites an existing one (its decorator-controller.yaml gives ConfigMaps the
`OnDelete` update strategy); a standalone install ships it in KFP's namespace
(manifests/kustomize/base/pipeline/kfp-launcher-configmap.yaml). So satk8s does not create it:
`satk8s setup launcher` merges only `providers.s3.default` (and `defaultPipelineRoot`, when the
settings name one) with a server-side apply under its own field manager, leaving every other
key, and every other provider, to its owner.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from satk8s.cluster.settings import ClusterSettings
from satk8s.errors import Satk8sError

LAUNCHER_CONFIGMAP = "kfp-launcher"
ROOT_KEY = "defaultPipelineRoot"
PROVIDERS_KEY = "providers"
FIELD_MANAGER = "satk8s"
"""The server-side apply field manager that owns satk8s's keys in kfp-launcher."""
KFP_DEFAULT_ROOT = "minio://mlpipeline/v2/artifacts"
"""KFP's root when kfp-launcher names none (env.go `defaultPipelineRoot`)."""
KFP_MINIO_SECRET = "mlpipeline-minio-artifact"
"""The Secret KFP's launcher reads for a minio:// root without a providers.minio section
(kubeflow/pipelines@2.17.0:backend/src/v2/config/env.go, getDefaultMinioSessionInfo; keys
`accesskey` and `secretkey`), present in profile namespaces (sync.py) and KFP's own."""


class LauncherError(Satk8sError):
    """kfp-launcher is missing or unreadable, or cannot take satk8s's keys."""


@dataclass(frozen=True)
class SecretRef:
    name: str
    access_key_key: str
    secret_key_key: str


@dataclass(frozen=True)
class LauncherConfig:
    """What KFP's launcher makes of a kfp-launcher ConfigMap for its pipeline root."""

    pipeline_root: str
    """`defaultPipelineRoot`, or KFP's own default when the key is empty or absent."""
    root_is_default: bool = False
    """True when kfp-launcher names no root (KFP_DEFAULT_ROOT applies)."""
    endpoint: str | None = None
    region: str | None = None
    disable_ssl: bool = False
    force_path_style: bool = True
    secret_ref: SecretRef | None = None
    """None: credentials from the pod's environment (cloud identity)."""
    has_s3_provider: bool = False
    """Whether `providers` has an `s3.default` section."""

    @property
    def scheme(self) -> str:
        return self.pipeline_root.split("://", 1)[0] if "://" in self.pipeline_root else ""


def _providers(data: Mapping[str, str]) -> dict[str, Any]:
    text = data.get(PROVIDERS_KEY) or ""
    if not text.strip():
        return {}
    try:
        providers = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"providers is not valid YAML: {err}") from err
    if not isinstance(providers, dict):
        raise ValueError("providers is not a mapping of provider sections")
    return providers


def parse_launcher(data: Mapping[str, str]) -> LauncherConfig:
    """The pipeline root of a kfp-launcher ConfigMap's data and, for an s3:// root, the S3
    settings KFP would use. Raises ValueError naming the bad key."""
    root = (data.get(ROOT_KEY) or "").strip()
    is_default = not root
    root = root or KFP_DEFAULT_ROOT
    if "://" not in root or root.endswith("://"):
        raise ValueError(f"{ROOT_KEY} is '{root}', not a scheme://bucket[/prefix] URI")
    providers = _providers(data)
    section = providers.get("s3") if isinstance(providers.get("s3"), dict) else {}
    default = section.get("default") if section else None
    if not root.startswith("s3://") or not isinstance(default, dict):
        return LauncherConfig(root, is_default, has_s3_provider=isinstance(default, dict))
    credentials = default.get("credentials")
    if not isinstance(credentials, dict):
        raise ValueError("providers.s3.default has no credentials (fromEnv or secretRef)")
    secret_ref = None
    if not credentials.get("fromEnv"):
        ref = credentials.get("secretRef") or {}
        missing = [k for k in ("secretName", "accessKeyKey", "secretKeyKey") if not ref.get(k)]
        if missing:
            raise ValueError(
                f"providers.s3.default.credentials.secretRef lacks {', '.join(missing)} "
                "(and fromEnv is false)"
            )
        secret_ref = SecretRef(ref["secretName"], ref["accessKeyKey"], ref["secretKeyKey"])
    return LauncherConfig(
        pipeline_root=root,
        root_is_default=is_default,
        endpoint=default.get("endpoint") or None,
        region=default.get("region") or None,
        disable_ssl=bool(default.get("disableSSL", False)),
        force_path_style=bool(default.get("forcePathStyle", True)),
        secret_ref=secret_ref,
        has_s3_provider=True,
    )


def s3_provider(settings: ClusterSettings) -> dict[str, Any]:
    """`providers.s3.default` for the settings' store: the same endpoint, region, addressing
    and credentials the steps use, in the terms of KFP's S3ProviderDefault (s3.go)."""
    url = settings.s3_endpoint_url
    if url:
        scheme, _, host = url.partition("://")
        endpoint, disable_ssl = host.rstrip("/"), scheme == "http"
        path_style = settings.s3_addressing_style != "virtual"
    else:
        # AWS S3 itself: KFP leaves the SDK to pick the regional endpoint for s3.amazonaws.com
        # (kubeflow/pipelines@2.17.0:backend/src/v2/objectstore/object_store.go, newS3Client).
        endpoint, disable_ssl = "s3.amazonaws.com", False
        path_style = settings.s3_addressing_style == "path"
    if settings.s3_secret:
        credentials: dict[str, Any] = {
            "fromEnv": False,
            "secretRef": {
                "secretName": settings.s3_secret,
                "accessKeyKey": settings.s3_access_key_key,
                "secretKeyKey": settings.s3_secret_key_key,
            },
        }
    else:
        credentials = {"fromEnv": True}
    provider: dict[str, Any] = {
        "endpoint": endpoint,
        "disableSSL": disable_ssl,
        "forcePathStyle": path_style,
        "credentials": credentials,
    }
    if settings.s3_region:
        provider["region"] = settings.s3_region
    return provider


def merged_keys(current: Mapping[str, str], settings: ClusterSettings) -> dict[str, str]:
    """The keys satk8s applies to kfp-launcher: `providers` with `s3.default` replaced (every
    other provider and `s3.Overrides` kept as they are) and, when the settings name a pipeline
    root, `defaultPipelineRoot`. Raises LauncherError when `providers` cannot be parsed."""
    try:
        providers = _providers(current)
    except ValueError as err:
        raise LauncherError(
            f"kfp-launcher's {err}; fix or remove that key by hand, then run this again"
        ) from None
    s3 = dict(providers.get("s3") or {}) if isinstance(providers.get("s3"), dict) else {}
    s3["default"] = s3_provider(settings)
    providers = {**providers, "s3": s3}
    keys = {PROVIDERS_KEY: yaml.safe_dump(providers, sort_keys=True)}
    if settings.pipeline_root:
        keys[ROOT_KEY] = settings.pipeline_root
    return keys


def launcher_diff(current: Mapping[str, str], keys: Mapping[str, str]) -> str:
    """A unified diff of the keys satk8s changes, as `key: value` blocks; "" when none."""

    def render(data: Mapping[str, str]) -> list[str]:
        lines: list[str] = []
        for key in sorted(keys):
            if key not in data:
                continue
            value = data[key]
            if "\n" in value.strip():
                lines.append(f"{key}: |")
                lines += [f"  {line}" for line in value.rstrip("\n").splitlines()]
            else:
                lines.append(f"{key}: {value}")
        return [line + "\n" for line in lines]

    before, after = render(current), render({**current, **keys})
    if before == after:
        return ""
    name = f"configmap/{LAUNCHER_CONFIGMAP} data"
    return "".join(difflib.unified_diff(before, after, f"{name} (now)", f"{name} (satk8s)"))


def apply_body(namespace: str, keys: Mapping[str, str]) -> dict[str, Any]:
    """The server-side apply request body: only satk8s's keys, so the API server leaves every
    other key to its owner (Kubernetes "Server-Side Apply": a manager owns the fields it
    sends)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": LAUNCHER_CONFIGMAP, "namespace": namespace},
        "data": dict(keys),
    }


def read_launcher_data(api: Any, namespace: str) -> dict[str, str]:
    """kfp-launcher's data in `namespace`; LauncherError when it is absent or unreadable."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from satk8s.cluster.kube import TIMEOUT_S

    try:
        found = client.CoreV1Api(api).read_namespaced_config_map(
            LAUNCHER_CONFIGMAP, namespace, _request_timeout=TIMEOUT_S
        )
    except ApiException as err:
        if err.status == 404:
            raise LauncherError(
                f"no ConfigMap {LAUNCHER_CONFIGMAP} in namespace {namespace}. KFP creates it: on "
                "multi-user Kubeflow its profile controller does, in every profile namespace "
                "labelled pipelines.kubeflow.org/enabled=true; a standalone KFP keeps it in its "
                "own namespace (kubeflow), where its runs execute. Is this the namespace your "
                "runs use?"
            ) from None
        raise LauncherError(
            f"cannot read ConfigMap {LAUNCHER_CONFIGMAP} in {namespace}: HTTP {err.status} "
            f"{err.reason}; you need get and patch on configmaps there"
        ) from None
    return dict(found.data or {})


def apply_launcher(api: Any, namespace: str, keys: Mapping[str, str]) -> dict[str, str]:
    """Server-side apply `keys` into kfp-launcher as field manager `satk8s`, taking over those
    keys from their previous manager (force: the diff was shown first). Returns the new data."""
    from kubernetes.client.exceptions import ApiException

    from satk8s.cluster.kube import TIMEOUT_S

    try:
        answer = api.call_api(
            "/api/v1/namespaces/{namespace}/configmaps/{name}",
            "PATCH",
            {"namespace": namespace, "name": LAUNCHER_CONFIGMAP},
            [("fieldManager", FIELD_MANAGER), ("force", "true")],
            {"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            body=apply_body(namespace, keys),
            response_type="V1ConfigMap",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=TIMEOUT_S,
        )
    except ApiException as err:
        raise LauncherError(
            f"could not apply satk8s's keys to {LAUNCHER_CONFIGMAP} in {namespace}: HTTP "
            f"{err.status} {err.reason}; you need patch on configmaps there"
        ) from None
    return dict(answer.data or {})


__all__ = [
    "FIELD_MANAGER",
    "KFP_DEFAULT_ROOT",
    "KFP_MINIO_SECRET",
    "LAUNCHER_CONFIGMAP",
    "LauncherConfig",
    "LauncherError",
    "SecretRef",
    "apply_body",
    "apply_launcher",
    "launcher_diff",
    "merged_keys",
    "parse_launcher",
    "read_launcher_data",
    "s3_provider",
]
