"""A Kubernetes API client from a kubeconfig (file, context) or from inside a pod."""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config

TIMEOUT_S = 10
"""Per request: satk8s answers in seconds, even against an unreachable cluster."""

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def connect(
    kubeconfig: str | Path | None = None,
    context: str | None = None,
    in_cluster: bool | None = False,
) -> tuple[client.ApiClient, str]:
    """The API client and the namespace the kubeconfig context (or the pod) defaults to.

    `in_cluster=None` tries the kubeconfig first and falls back to the pod's ServiceAccount
    when there is none and this runs in a pod (a notebook or CI job inside the cluster).
    Raises kubernetes.config.ConfigException when no usable configuration is found.
    """
    if in_cluster is None:
        try:
            return connect(kubeconfig, context, in_cluster=False)
        except (config.ConfigException, OSError):
            if kubeconfig is not None or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                raise
        return connect(in_cluster=True)
    configuration = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=configuration)
        namespace = _SA_NAMESPACE.read_text().strip() if _SA_NAMESPACE.is_file() else "default"
    else:
        # $KUBECONFIG read now, not when the kubernetes package was imported (it keeps the
        # value it saw then as its default).
        config_file = str(kubeconfig) if kubeconfig is not None else os.environ.get("KUBECONFIG")
        config_file = config_file or str(Path("~/.kube/config").expanduser())
        config.load_kube_config(
            config_file=config_file, context=context, client_configuration=configuration
        )
        _, active = config.list_kube_config_contexts(config_file=config_file)
        if context is not None:
            contexts, _ = config.list_kube_config_contexts(config_file=config_file)
            active = next((c for c in contexts if c["name"] == context), active)
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
    # One retry: satk8s should say "unreachable" in seconds, not after urllib3's backoff.
    configuration.retries = 1
    return client.ApiClient(configuration), namespace
