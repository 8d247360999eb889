"""Check: the Kubeflow Pipelines API answers (directly, or through the API server's proxy), and
its backend is a version satk8s supports (healthz `tag_name`, KFP >= 2.15)."""

from __future__ import annotations

import json

import requests

from satk8s.doctor.context import TIMEOUT_S, DoctorContext, api_error_text, forbidden
from satk8s.doctor.result import CheckResult

NAME = "kfp-api"
HEALTHZ = "apis/v2beta1/healthz"
KFP_SERVICE = "ml-pipeline:8888"
"""KFP's API server Service and its HTTP port, in KFP's own namespace."""


def _describe(health: dict) -> str:
    version = health.get("tag_name") or health.get("commit_sha") or "unknown version"
    mode = "multi-user" if health.get("multi_user") else "single-user"
    return f"KFP {version} ({mode})"


def _check_host(ctx: DoctorContext) -> CheckResult:
    host = (ctx.options.kfp_host or "").rstrip("/")
    url = f"{host}/{HEALTHZ}"
    headers = {"Accept": "application/json"}
    if ctx.options.kfp_token:
        headers["Authorization"] = f"Bearer {ctx.options.kfp_token}"
    try:
        response = requests.get(url, headers=headers, timeout=TIMEOUT_S)
    except requests.RequestException as err:
        return CheckResult.fail(
            NAME,
            f"cannot reach the KFP API at {url}: {type(err).__name__}",
            "check --kfp-host (the URL you give kfp.Client, e.g. https://<kubeflow host>/pipeline); "
            "without an ingress, `kubectl -n kubeflow port-forward svc/ml-pipeline 8888` and "
            "pass --kfp-host http://127.0.0.1:8888",
        )
    if response.status_code in (401, 403):
        return CheckResult.fail(
            NAME,
            f"the KFP API at {url} refused the request (HTTP {response.status_code})",
            "pass a token with --kfp-token or KFP_TOKEN, e.g. "
            f"`kubectl -n {ctx.namespace} create token <service account> "
            "--audience=pipelines.kubeflow.org`",
        )
    if response.status_code != 200:
        return CheckResult.fail(
            NAME,
            f"the KFP API at {url} answered HTTP {response.status_code}",
            "check that --kfp-host points at KFP's API (kfp.Client's host), and that "
            "`kubectl -n kubeflow get pods -l app=ml-pipeline` is Running",
        )
    try:
        health = response.json()
    except ValueError:
        return CheckResult.fail(
            NAME,
            f"{url} answered with a page, not KFP's JSON (a login page?)",
            "pass a token with --kfp-token or KFP_TOKEN so the auth proxy lets the request "
            "through, or point --kfp-host at KFP's API itself",
        )
    return _judge(ctx, health, host, f" at {host}")


def _check_proxy(ctx: DoctorContext) -> CheckResult:
    kfp_ns = ctx.options.kfp_namespace
    where = f"service {KFP_SERVICE} in namespace {kfp_ns} (via the API server's proxy)"
    try:
        response = ctx.core.connect_get_namespaced_service_proxy_with_path(
            KFP_SERVICE, kfp_ns, HEALTHZ, _preload_content=False, _request_timeout=TIMEOUT_S
        )
        health = json.loads(response.data or b"{}")
    except Exception as err:
        fix = (
            "is KFP installed? `kubectl -n kubeflow get svc ml-pipeline`; if it lives elsewhere "
            "pass --kfp-namespace, or pass --kfp-host with the URL you give kfp.Client"
        )
        if forbidden(err):
            fix = (
                "your user may not proxy to services in that namespace: pass --kfp-host with "
                "the URL you give kfp.Client (and --kfp-token if it needs one)"
            )
        return CheckResult.fail(NAME, f"no answer from {where}: {api_error_text(err)}", fix)
    if not isinstance(health, dict):
        health = {}
    return _judge(ctx, health, where, f", {where}")


def _judge(ctx: DoctorContext, health: dict, where: str, suffix: str) -> CheckResult:
    """OK for a supported backend; FAIL below KFP 2.15, WARN when the version is unknown."""
    from satk8s.orchestration.kfp_client import KfpError, check_backend

    ctx.kfp_health = health
    message = f"{_describe(health)}{suffix}"
    try:
        note = check_backend(health, where)
    except KfpError as err:
        return CheckResult.fail(NAME, str(err), "upgrade Kubeflow Pipelines to 2.15 or newer")
    if note:
        return CheckResult.warn(
            NAME,
            message,
            f"{note}; check the KFP version (kubectl -n kubeflow get deploy ml-pipeline -o yaml)",
        )
    return CheckResult.ok(NAME, message)


def check_kfp_api(ctx: DoctorContext) -> CheckResult:
    """GET KFP's healthz: at --kfp-host when given, else through the API server's proxy."""
    return _check_host(ctx) if ctx.options.kfp_host else _check_proxy(ctx)


def kfp_health(ctx: DoctorContext) -> dict | None:
    """KFP's healthz answer: the kfp-api check's, or read now; None when KFP does not answer."""
    if ctx.kfp_health is None:
        check_kfp_api(ctx)
    return ctx.kfp_health
