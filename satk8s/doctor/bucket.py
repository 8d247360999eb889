"""Check: the pipeline root's bucket takes a write, a read and a delete with the credentials
KFP's launcher uses for it (kfp-launcher's providers.s3, else the pod's environment)."""

from __future__ import annotations

from satk8s.cluster.launcher import LauncherConfig
from satk8s.doctor.context import DoctorContext, api_error_text
from satk8s.doctor.launcher import read_launcher
from satk8s.doctor.result import CheckResult
from satk8s.doctor.s3_probe import ProbeTarget, probe, s3_client

NAME = "bucket"


def _endpoint_url(launcher: LauncherConfig | None) -> str | None:
    """boto3's endpoint_url for KFP's `endpoint` (host[:port]); None lets boto3 pick AWS's
    regional endpoint, which path-style requests to a non-us-east-1 bucket need."""
    endpoint = launcher.endpoint if launcher else None
    if not endpoint or endpoint.split("://")[-1].split(":")[0].endswith("amazonaws.com"):
        return None
    if "://" in endpoint:
        return endpoint
    return f"{'http' if launcher.disable_ssl else 'https'}://{endpoint}"


def check_bucket(ctx: DoctorContext) -> CheckResult:
    ns = ctx.namespace
    launcher: LauncherConfig | None = None
    reason = ""
    try:
        launcher = read_launcher(ctx)
    except (LookupError, ValueError) as err:
        reason = str(err)
    except Exception as err:
        reason = api_error_text(err)
    if launcher is None and not ctx.options.bucket:
        return CheckResult.fail(
            NAME,
            f"no pipeline root to probe: {reason}",
            "fix the kfp-launcher check, or pass --bucket s3://<bucket>/<prefix>",
        )
    if not ctx.options.bucket and launcher is not None and launcher.scheme != "s3":
        return CheckResult.ok(
            NAME,
            f"pipeline root {launcher.pipeline_root} is KFP's own object store; not probed "
            "(KFP keeps its credentials)",
        )
    uri = ctx.options.bucket or launcher.pipeline_root

    keys = None
    secret = launcher.secret_ref if launcher else None
    if secret:
        try:
            data = ctx.secret(secret.name)
        except Exception as err:
            return CheckResult.fail(
                NAME,
                f"cannot read Secret {secret.name} for the S3 keys: {api_error_text(err)}",
                f"you need get on that Secret in {ns} (the chart's Role grants it to the runs)",
            )
        if not data or not data.get(secret.access_key_key) or not data.get(secret.secret_key_key):
            return CheckResult.fail(
                NAME,
                f"Secret {secret.name} is missing or lacks "
                f"{secret.access_key_key}/{secret.secret_key_key}",
                f"kubectl -n {ns} create secret generic {secret.name} "
                f"--from-literal={secret.access_key_key}=<id> "
                f"--from-literal={secret.secret_key_key}=<secret>",
            )
        keys = (data[secret.access_key_key], data[secret.secret_key_key])
    who = f"keys from Secret {secret.name}" if secret else "credentials from the environment"
    target = ProbeTarget(NAME, uri, who, secret.name if secret else None, ns, "store.pipelineRoot")
    client = s3_client(
        _endpoint_url(launcher),
        launcher.region if launcher else None,
        launcher.force_path_style if launcher else True,
        keys,
    )
    return probe(target, client)
