"""Check: the ServiceAccount runs execute as (satk8s-settings' serviceAccount, passed at submit)
exists, with the cloud identity and image pull secrets the chart gave it.

KFP runs every pod of a run, its drivers and launchers included, as the run's service account;
a run that names none gets the backend's default runner (kubeflow/pipelines@2.17.0:
backend/src/apiserver/template/template.go, setDefaultServiceAccount; `default-editor` on
multi-user Kubeflow), which has none of what the chart set up."""

from __future__ import annotations

from satk8s.doctor.context import (
    TIMEOUT_S,
    DoctorContext,
    api_error_text,
    forbidden,
    settings_for_check,
)
from satk8s.doctor.result import CheckResult

NAME = "runner"

IDENTITY_ANNOTATIONS = {
    "eks.amazonaws.com/role-arn": "AWS IRSA role",
    "iam.gke.io/gcp-service-account": "GKE workload identity",
    "azure.workload.identity/client-id": "Azure workload identity",
}
"""The annotations the chart sets for a cloud identity (helm/satk8s serviceAccount values)."""


def check_run_account(ctx: DoctorContext) -> CheckResult:
    ns = ctx.namespace
    settings = settings_for_check(ctx, NAME)
    if isinstance(settings, CheckResult):
        return settings
    name = settings.service_account
    try:
        account = ctx.core.read_namespaced_service_account(name, ns, _request_timeout=TIMEOUT_S)
    except Exception as err:
        if getattr(err, "status", None) == 404:
            return CheckResult.fail(
                NAME,
                f"no ServiceAccount {name} in {ns}: runs submitted by satk8s execute as it and "
                "would not start",
                f"helm upgrade satk8s helm/satk8s -n {ns} --reuse-values "
                "--set serviceAccount.create=true",
            )
        if forbidden(err):
            return CheckResult.warn(
                NAME,
                f"not allowed to read ServiceAccount {name}: {api_error_text(err)}",
                f"ask for get on serviceaccounts in {ns}, or trust the chart",
            )
        return CheckResult.fail(
            NAME,
            f"cannot read ServiceAccount {name}: {api_error_text(err)}",
            "re-run when the API answers",
        )
    annotations = dict(account.metadata.annotations or {})
    identities = [
        f"{what} {annotations[key]}"
        for key, what in IDENTITY_ANNOTATIONS.items()
        if key in annotations
    ]
    pulls = [ref.name for ref in account.image_pull_secrets or []]
    details = [f"cloud identity: {', '.join(identities) or 'none'}"]
    problems, fixes = [], []
    for secret in pulls:
        try:
            present = ctx.secret(secret) is not None
        except Exception as err:
            details.append(f"image pull secret {secret}: not checked ({api_error_text(err)})")
            continue
        details.append(f"image pull secret {secret}: {'present' if present else 'MISSING'}")
        if not present:
            problems.append(f"image pull secret {secret} does not exist")
            fixes.append(
                f"kubectl -n {ns} create secret docker-registry {secret} --docker-server=… "
                "--docker-username=… --docker-password=…"
            )
    if not pulls:
        details.append("image pull secrets: none (public or node-authorized registry)")
    if not settings.s3_secret and not identities:
        problems.append(
            "the S3 credentials come from the pods' environment (no s3Secret), but the account "
            "has no cloud identity annotation"
        )
        fixes.append(
            "set serviceAccount.awsRoleArn / gcpServiceAccount / azureClientId in the chart "
            "values, or secrets.s3.source=existing with a Secret of keys"
        )
    message = f"runs execute as ServiceAccount {name} (passed as service_account at submit)"
    if problems:
        return CheckResult.warn(
            NAME, f"{message}; {'; '.join(problems)}", "; ".join(fixes), tuple(details)
        )
    return CheckResult.ok(NAME, message, tuple(details))
