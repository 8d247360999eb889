"""What every check shares: the API client, the namespace, the options, and cached reads."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from satk8s.cluster.kube import TIMEOUT_S
from satk8s.cluster.launcher import LAUNCHER_CONFIGMAP
from satk8s.cluster.settings import SETTINGS_CONFIGMAP, ClusterSettings
from satk8s.doctor.result import CheckResult
from satk8s.errors import ConfigError

__all__ = [
    "LAUNCHER_CONFIGMAP",
    "SETTINGS_CONFIGMAP",
    "TIMEOUT_S",
    "DoctorContext",
    "DoctorOptions",
    "api_error_text",
    "forbidden",
]


@dataclass
class DoctorOptions:
    """What the user asked to check."""

    namespace: str
    kfp_host: str | None = None
    """KFP API base URL as given to kfp.Client (e.g. https://kubeflow.example.com/pipeline).
    None: reach KFP through the API server's service proxy."""
    kfp_token: str | None = None
    kfp_namespace: str = "kubeflow"
    """Namespace of KFP's ml-pipeline Service, for the service-proxy route."""
    bucket: str | None = None
    """s3://bucket[/prefix] to probe; None: the namespace's pipeline root."""
    pipeline: str | None = None
    """A compiled pipeline (or a split grid's parts list) to hold against the nodes."""


@dataclass
class DoctorContext:
    api: client.ApiClient
    options: DoctorOptions
    _configmaps: dict[str, dict[str, str] | None] = field(default_factory=dict)
    _secrets: dict[str, dict[str, str] | None] = field(default_factory=dict)
    kfp_health: dict[str, Any] | None = None
    """KFP's healthz answer, once the kfp-api check has read it."""

    @property
    def namespace(self) -> str:
        return self.options.namespace

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def configmap(self, name: str) -> dict[str, str] | None:
        """The ConfigMap's data in the namespace, or None if it does not exist.
        Other API errors (403, 5xx, unreachable) propagate to the check."""
        if name not in self._configmaps:
            try:
                cm = self.core.read_namespaced_config_map(
                    name, self.namespace, _request_timeout=TIMEOUT_S
                )
                self._configmaps[name] = dict(cm.data or {})
            except ApiException as err:
                if err.status != 404:
                    raise
                self._configmaps[name] = None
        return self._configmaps[name]

    def nodes(self) -> Iterator[client.V1Node]:
        """Every node of the cluster, following list pagination."""
        token: str | None = None
        while True:
            kwargs: dict[str, object] = {"limit": 500, "_request_timeout": TIMEOUT_S}
            if token:
                kwargs["_continue"] = token
            page = self.core.list_node(**kwargs)
            yield from page.items
            token = page.metadata._continue if page.metadata else None
            if not token:
                return

    def settings(self) -> ClusterSettings | None:
        """The namespace's satk8s-settings, or None when the chart is not installed. A bad
        key raises ConfigError; API errors propagate to the check."""
        data = self.configmap(SETTINGS_CONFIGMAP)
        if data is None:
            return None
        source = f"{SETTINGS_CONFIGMAP} in namespace {self.namespace}"
        return ClusterSettings.from_data(data, source, self.namespace)

    def secret(self, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded, or None if it does not exist. Values stay in memory:
        nothing here prints or logs them."""
        if name not in self._secrets:
            try:
                secret = self.core.read_namespaced_secret(
                    name, self.namespace, _request_timeout=TIMEOUT_S
                )
                data: dict[str, Any] = secret.data or {}
                self._secrets[name] = {
                    k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()
                }
            except ApiException as err:
                if err.status != 404:
                    raise
                self._secrets[name] = None
        return self._secrets[name]


def api_error_text(err: Exception) -> str:
    """A one-line description of a Kubernetes API failure."""
    if isinstance(err, ApiException):
        return f"HTTP {err.status} {err.reason}".strip()
    return f"{type(err).__name__}: {err}"


def forbidden(err: Exception) -> bool:
    return isinstance(err, ApiException) and err.status in (401, 403)


def settings_for_check(ctx: DoctorContext, check: str) -> ClusterSettings | CheckResult:
    """The namespace's settings for a check that needs them, or the result that ends it: a bad
    key or an unreadable ConfigMap fails it, a namespace without the chart skips it."""
    try:
        settings = ctx.settings()
    except ConfigError as err:
        return CheckResult.fail(check, str(err), "fix the chart values and helm upgrade")
    except Exception as err:
        return CheckResult.fail(
            check,
            f"cannot read satk8s-settings: {api_error_text(err)}",
            f"you need get on configmaps in {ctx.namespace}",
        )
    if settings is None:
        return CheckResult.skip(check, "no satk8s-settings: the chart is not installed here")
    return settings
