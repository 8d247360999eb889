"""Check: the Kubernetes API server answers with this kubeconfig."""

from __future__ import annotations

import json

from kubernetes import client

from satk8s.doctor.context import TIMEOUT_S, DoctorContext, api_error_text
from satk8s.doctor.result import CheckResult

NAME = "api"


def check_api(ctx: DoctorContext) -> CheckResult:
    """GET /version: proves the address, TLS and credentials work before anything else runs."""
    host = ctx.api.configuration.host
    try:
        # Raw JSON: the generated model rejects servers that leave out optional-looking fields.
        response = client.VersionApi(ctx.api).get_code(
            _preload_content=False, _request_timeout=TIMEOUT_S
        )
        version = json.loads(response.data).get("gitVersion", "(unknown version)")
    except Exception as err:  # any failure here means: nothing else can be checked
        return CheckResult.fail(
            NAME,
            f"cannot reach the Kubernetes API at {host}: {api_error_text(err)}",
            "check the kubeconfig and context (`kubectl --context <ctx> version`), or pass "
            "--kubeconfig/--context; for a cloud cluster, refresh its credentials "
            "(e.g. `aws eks update-kubeconfig`, `gcloud container clusters get-credentials`)",
        )
    return CheckResult.ok(NAME, f"Kubernetes {version} at {host}")
