"""A Kubernetes API client from a kubeconfig (file, context) or from inside a pod."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def connect(
    kubeconfig: str | Path | None = None,
    context: str | None = None,
    in_cluster: bool = False,
) -> tuple[client.ApiClient, str]:
    """The API client and the namespace the kubeconfig context (or the pod) defaults to.

    Raises kubernetes.config.ConfigException when no usable configuration is found.
    """
    configuration = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=configuration)
        namespace = _SA_NAMESPACE.read_text().strip() if _SA_NAMESPACE.is_file() else "default"
    else:
        config_file = str(kubeconfig) if kubeconfig is not None else None
        config.load_kube_config(
            config_file=config_file, context=context, client_configuration=configuration
        )
        _, active = config.list_kube_config_contexts(config_file=config_file)
        if context is not None:
            contexts, _ = config.list_kube_config_contexts(config_file=config_file)
            active = next((c for c in contexts if c["name"] == context), active)
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
    # One retry: the doctor should say "unreachable" in seconds, not after urllib3's backoff.
    configuration.retries = 1
    return client.ApiClient(configuration), namespace
